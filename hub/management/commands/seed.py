from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from hub.sandbox import sandbox_connections, sandbox_participants
from hub.services.api_keys import issue_key_unaudited


class Command(BaseCommand):
    help = "Create the sandbox participants (one per role) and print a new test API key for each."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("what", choices=["sandbox"])
        parser.add_argument(
            "--json", action="store_true", help="print role -> {participant, key} as JSON"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["what"] != "sandbox":
            raise CommandError("only 'sandbox' can be seeded")
        with transaction.atomic():
            out: dict[str, dict[str, str]] = {}
            participants = sandbox_participants()
            for participant in participants:
                _, secret = issue_key_unaudited(
                    participant=participant, livemode=False, name="sandbox"
                )
                out[participant.role] = {"participant": participant.pk, "key": secret}
            connections = sandbox_connections(participants)
        # The institutions' connections to their sandboxes, started by ``hub serve``.
        for role, adapter in (("payment_institution", "stripe_like"), ("bank", "bank")):
            out[role]["adapter_connection"] = connections[adapter]
        if options["json"]:
            self.stdout.write(json.dumps(out, indent=2))
        else:
            for role, row in out.items():
                self.stdout.write(f"{role:<20} {row['participant']}  {row['key']}")
