"""Idempotency keys for POST requests (24 hours, scoped to the participant and mode).

The record is claimed in its own short transaction before the request runs, so a concurrent
duplicate meets the unique constraint and is told 409 rather than running twice; the response is
stored afterwards and replayed byte for byte to later retries with the same body.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from hub import errors
from hub.conf import hub_settings
from hub.crypto import decrypt, encrypt
from hub.models import IdempotencyRecord
from hub.principal import Principal

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise errors.InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            code="idempotency_key_invalid",
            param="Idempotency-Key",
        )


def idempotency_begin(
    *, actor: Principal, key: str, method: str, path: str, body: bytes
) -> IdempotencyRecord | StoredResponse:
    """Claim ``key`` for this request, or return the stored response of an earlier one."""
    _check_key(key)
    fingerprint = request_fingerprint(method, path, body)
    expired_before = timezone.now() - timedelta(seconds=hub_settings.IDEMPOTENCY_TTL_SECONDS)
    scope = {"participant": actor.participant, "livemode": actor.livemode, "key": key}
    for _ in range(2):
        # A retry (the common case for a known key) is answered by one read; only a key not
        # seen yet is inserted, and the unique constraint settles two first requests racing.
        existing = IdempotencyRecord.objects.filter(**scope).first()
        if existing is None:
            try:
                with transaction.atomic():
                    return IdempotencyRecord.objects.create(
                        **scope,
                        method=method,
                        path=path,
                        request_hash=fingerprint,
                        request_id=actor.request_id,
                    )
            except IntegrityError:
                existing = IdempotencyRecord.objects.filter(**scope).first()
        if existing is None:
            continue  # expired and swept between our insert and our read: claim again
        if existing.created_at < expired_before:
            IdempotencyRecord.objects.filter(pk=existing.pk).delete()
            continue
        if existing.request_hash != fingerprint:
            raise errors.IdempotencyError(
                "This Idempotency-Key was used with another request; "
                "use a new key for a new request.",
                code="idempotency_key_reused",
                param="Idempotency-Key",
                status=422,
            )
        if existing.state == IdempotencyRecord.State.IN_PROGRESS:
            raise errors.IdempotencyError(
                "A request with this Idempotency-Key is still being processed; retry later.",
                code="idempotency_key_in_use",
                param="Idempotency-Key",
                status=409,
            )
        assert existing.response_status is not None
        return StoredResponse(
            status=existing.response_status, body=_open(bytes(existing.response_body or b""))
        )
    raise errors.IdempotencyError(
        "The Idempotency-Key could not be claimed; retry.",
        code="idempotency_key_in_use",
        status=409,
    )


def _seal(body: bytes) -> bytes:
    # Stored responses can carry secrets shown once (a new API key, a webhook signing secret):
    # they are encrypted at rest like every other secret the hub must read back. latin-1 maps
    # bytes to text one to one.
    return encrypt(body.decode("latin-1")).encode("ascii")


def _open(sealed: bytes) -> bytes:
    return decrypt(sealed.decode("ascii")).encode("latin-1")


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: bytes) -> None:
    """Store the response, or release the key when the request did not really run (a refused
    body or content type, an internal error) so that the client may retry it."""
    if status in (400, 413, 415) or status >= 500:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.State.COMPLETED,
        response_status=status,
        response_body=_seal(body),
        completed_at=timezone.now(),
    )


def idempotency_purge(*, now: object | None = None) -> int:
    moment = now or timezone.now()
    cutoff = moment - timedelta(seconds=hub_settings.IDEMPOTENCY_TTL_SECONDS)  # type: ignore[operator]
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
