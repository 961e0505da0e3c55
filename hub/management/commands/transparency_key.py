from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from hub.transparency.keys import signing_key_rotate, signing_keys


class Command(BaseCommand):
    help = (
        "The transparency log's Ed25519 signing keys: `list` prints every key (retired ones "
        "too) as signed-note verifier keys; `rotate` retires the active key and makes a new "
        "one. Receipts and checkpoints signed before stay verifiable with the retired key, "
        "which stays published at GET /v1/audit/keys: announce the new key to the regulators."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["list", "rotate"])

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "rotate":
            key = signing_key_rotate()
            self.stdout.write(f"new active key {key.key_id}")
        for key in signing_keys():
            state = "active" if key.active else f"retired {key.retired_at:%Y-%m-%dT%H:%M:%SZ}"
            self.stdout.write(f"{key.vkey}  {state}")
