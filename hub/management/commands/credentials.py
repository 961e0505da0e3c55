from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from hub.crypto import rotate
from hub.models import SigningKey, WebhookEndpoint
from hub.services.adapters.connections import adapter_credentials_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypt every secret kept at rest (adapter credentials, webhook signing secrets, the "
        "transparency log's signing keys) under "
        "the newest key of HUB_ENCRYPTION_KEYS, so that older keys can be dropped. Safe to run "
        "while the hub serves: each row is rewritten in its own short transaction."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["reencrypt"])

    def handle(self, *args: Any, **options: Any) -> None:
        connections = adapter_credentials_reencrypt()
        endpoints = 0
        for pk in WebhookEndpoint.objects.values_list("pk", flat=True):
            with transaction.atomic():
                row = WebhookEndpoint.objects.select_for_update().get(pk=pk)
                row.secret_encrypted = rotate(row.secret_encrypted)
                if row.previous_secret_encrypted:
                    row.previous_secret_encrypted = rotate(row.previous_secret_encrypted)
                row.save(update_fields=["secret_encrypted", "previous_secret_encrypted"])
            endpoints += 1
        keys = 0
        for pk in SigningKey.objects.values_list("pk", flat=True):
            with transaction.atomic():
                key = SigningKey.objects.select_for_update().get(pk=pk)
                key.private_key_encrypted = rotate(key.private_key_encrypted)
                key.save(update_fields=["private_key_encrypted"])
            keys += 1
        self.stdout.write(
            f"re-encrypted {connections} adapter credential sets, {endpoints} webhook secrets"
            f" and {keys} signing keys"
        )
