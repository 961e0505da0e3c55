from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DatabaseError, transaction

from hub.conf import hub_settings
from hub.demo import ROLES, Demo, DemoError, Options


class Command(BaseCommand):
    help = (
        "Drive one Korean buyer's order end to end through a running hub (`make run`): trade "
        "documents, a payin through the sandbox payment institution, verification, settlement, "
        "conversion to CNY, a payout through the sandbox bank, the receipt, its proof and its "
        "offline verification."
    )
    requires_system_checks = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="the hub (default %(default)s)"
        )
        parser.add_argument(
            "--keys",
            metavar="FILE",
            help="the JSON that `hub seed sandbox --json` printed; without it the demo mints "
            "fresh test keys for the sandbox participants in this hub's database",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="seconds to wait for each asynchronous step (default %(default)s)",
        )
        parser.add_argument(
            "--out", metavar="DIR", help="where to save the receipt's proof (default: a temp dir)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["timeout"] <= 0:
            raise CommandError("--timeout is a number of seconds above 0")
        try:
            keys = _read_keys(options["keys"]) if options["keys"] else _mint_keys()
        except DemoError as exc:
            raise CommandError(exc.message) from None
        demo = Demo(
            keys=keys,
            options=Options(
                url=options["url"],
                timeout=options["timeout"],
                out_dir=Path(options["out"]) if options["out"] else None,
                cutoff=str(hub_settings.SETTLEMENT_CUTOFF),
            ),
            out=_Stream(self.stdout),
        )
        try:
            demo.run()
        except DemoError as exc:
            self.stdout.write("")
            lines = [f"The demo stopped: {exc.message}"]
            if exc.error is not None:
                lines.append(json.dumps({"error": exc.error}, indent=2, ensure_ascii=False))
            raise CommandError("\n".join(lines)) from None
        finally:
            demo.close()


class _Stream:
    """The command's stdout as a plain text stream (Django's wrapper ends every write with a
    newline, which the progress line must not get)."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> int:
        self.wrapper.write(text, ending="")
        return len(text)

    def flush(self) -> None:
        self.wrapper.flush()

    def isatty(self) -> bool:
        return bool(self.wrapper.isatty())


def _read_keys(path: str) -> dict[str, str]:
    """role -> key from the output of ``hub seed sandbox --json`` (or a plain role -> key map)."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DemoError(f"Cannot read the keys file {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise DemoError(f"{path} is not the JSON `hub seed sandbox --json` prints.")
    keys = {}
    for role in ROLES:
        entry = raw.get(role)
        key = entry.get("key") if isinstance(entry, dict) else entry
        if not isinstance(key, str) or not key:
            raise DemoError(f"{path} has no key for the {role} role.")
        keys[role] = key
    return keys


def _mint_keys() -> dict[str, str]:
    """New test keys for the sandbox participants, made as ``hub seed sandbox`` makes them (the
    participants and their sandbox connections are created if missing). The only database
    access of the demo."""
    from hub.sandbox import sandbox_connections, sandbox_participants
    from hub.services.api_keys import issue_key_unaudited

    try:
        with transaction.atomic():
            participants = sandbox_participants()
            keys = {}
            for participant in participants:
                if participant.role in ROLES:
                    _, secret = issue_key_unaudited(
                        participant=participant, livemode=False, name="demo"
                    )
                    keys[str(participant.role)] = secret
            sandbox_connections(participants)
    except DatabaseError as exc:
        raise DemoError(
            f"Cannot mint keys in the hub's database ({exc}); is it migrated (`hub migrate`)? "
            "Or pass --keys FILE."
        ) from None
    return keys
