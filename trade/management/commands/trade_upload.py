from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from hub import errors
from hub.models import Participant, Role
from hub.principal import ROLE_SCOPES, Principal
from trade.models import DocumentUpload
from trade.uploads import upload_create, upload_payload


class Command(BaseCommand):
    help = (
        "File a bulk file of trade documents for a merchant, as the operator (the same checks "
        "and outcome as POST /v1/trade/uploads, without the API's request size limit). Prints "
        "the upload as JSON; exits 1 when the file is refused."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--kind", required=True, choices=DocumentUpload.Kind.values)
        parser.add_argument("--merchant", required=True, help="the merchant's participant id")
        parser.add_argument(
            "--mode", default=DocumentUpload.Mode.PARTIAL, choices=DocumentUpload.Mode.values
        )
        parser.add_argument(
            "--format", choices=DocumentUpload.Format.values, help="default: from the file name"
        )
        parser.add_argument("--live", action="store_true", help="file in live mode")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        fmt = options["format"] or (
            DocumentUpload.Format.CSV
            if path.name.lower().removesuffix(".gz").endswith(".csv")
            else DocumentUpload.Format.JSONL
        )
        operator = Participant.objects.filter(role=Role.OPERATOR).order_by("pk").first()
        if operator is None:
            raise CommandError("No operator participant: run `hub seed sandbox` or onboard one.")
        actor = Principal(
            participant=operator,
            api_key=None,
            livemode=options["live"],
            scopes=ROLE_SCOPES[Role.OPERATOR],
            request_id="cli",
        )
        try:
            upload = upload_create(
                actor=actor,
                kind=options["kind"],
                fmt=fmt,
                mode=options["mode"],
                data=path.read_bytes(),
                filename=path.name,
                merchant_id=options["merchant"],
            )
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from None
        except errors.HubError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(json.dumps(upload_payload(upload), indent=2))
        if upload.status == DocumentUpload.Status.REJECTED:
            raise CommandError(f"no row was filed: {upload.rows_rejected} rows refused")
