"""``hub adapters list`` and ``hub adapters conformance NAME... | --all``."""

from __future__ import annotations

import importlib.util
import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from adapters.conformance.hook import HOOK
from adapters.conformance.runner import run_conformance
from adapters.errors import AdapterMisconfigured
from adapters.registry import InstalledAdapter, installed_adapters


def _installed() -> dict[str, InstalledAdapter]:
    try:
        return installed_adapters()
    except (AdapterMisconfigured, ImportError, AttributeError) as exc:
        raise CommandError(f"the installed adapters cannot be loaded: {exc}") from None


class Command(BaseCommand):
    help = "List the installed adapters, or run the conformance kit on them."
    requires_system_checks: list[str] = []  # no database or app checks needed

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = actions.add_parser(
            "list", help="the adapters installed (hub.adapters entry points)"
        )
        listing.add_argument("--json", action="store_true", help="print them as JSON")
        check = actions.add_parser(
            "conformance", help="run the conformance kit on adapters against their sandboxes"
        )
        check.add_argument("names", nargs="*", metavar="NAME", help="installed adapter names")
        check.add_argument("--all", action="store_true", help="every installed adapter")
        check.add_argument("-k", dest="keyword", help="only the checks matching (pytest -k)")
        check.add_argument("-q", "--quiet", action="store_true", help="one dot per check")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            self._list(as_json=options["json"])
        else:
            self._conformance(options)

    def _list(self, *, as_json: bool) -> None:
        rows: list[dict[str, Any]] = []
        for name, installed in _installed().items():
            manifest = installed.adapter_class.manifest
            rows.append(
                {
                    "name": name,
                    "version": manifest.version,
                    "distribution": installed.distribution,
                    "capabilities": sorted(manifest.capabilities),
                    "conformance_hook": getattr(installed.adapter_class, HOOK, None) is not None,
                }
            )
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        header = ("NAME", "VERSION", "DISTRIBUTION", "CAPABILITIES")
        table = [header] + [
            (r["name"], r["version"], r["distribution"], ", ".join(r["capabilities"])) for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(3)]
        for row in table:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            self.stdout.write("  ".join([*cells, row[3]]))

    def _conformance(self, options: dict[str, Any]) -> None:
        installed = _installed()
        names: list[str] = list(dict.fromkeys(options["names"]))
        if options["all"]:
            if names:
                raise CommandError("give adapter names or --all, not both")
            names = list(installed)
        if not names:
            raise CommandError("name the adapters to check, or --all")
        unknown = [n for n in names if n not in installed]
        if unknown:
            raise CommandError(
                f"no installed adapter is named {', '.join(unknown)}; "
                f"installed: {', '.join(installed) or 'none'}"
            )
        if importlib.util.find_spec("pytest") is None:
            raise CommandError("the conformance kit runs on pytest: pip install 'pytest>=8'")
        self.stdout.write(f"Conformance of {', '.join(names)}")
        code = run_conformance(
            names,
            write=lambda line: self.stdout.write(line, ending=""),
            verbose=not options["quiet"],
            keyword=options["keyword"],
        )
        self.stdout.flush()
        if code != 0:
            raise CommandError(f"conformance failed for {', '.join(names)}", returncode=code)
        self.stdout.write(f"Conformance passed: {', '.join(names)}")
