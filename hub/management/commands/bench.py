from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from bench import BENCHMARKS, BenchError, load


class Command(BaseCommand):
    help = (
        "Run a benchmark: `hub bench NAME [options]`. Progress goes to stderr; the result is one "
        "JSON line, printed last on stdout."
    )
    requires_system_checks = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        names = parser.add_subparsers(dest="name", required=True, metavar="NAME")
        for name in sorted(BENCHMARKS):
            module = load(name)
            module.add_arguments(names.add_parser(name, help=module.HELP))

    def handle(self, *args: Any, **options: Any) -> None:
        def log(line: str) -> None:
            print(f"[bench {options['name']}] {line}", file=sys.stderr, flush=True)

        try:
            result = load(options["name"]).run(options, log)
        except BenchError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        self.stdout.write(json.dumps(result, separators=(",", ":")))
