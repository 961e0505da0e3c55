"""API keys: issued by an operator, shown once, stored as a keyed hash, revoked or rotated."""

from __future__ import annotations

import secrets
import string
import threading
import time
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from hub import errors
from hub.conf import hub_settings
from hub.crypto import keyed_hash
from hub.models import ApiKey, Participant
from hub.principal import ROLE_SCOPES, Principal
from hub.services.events import event_emit

_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 32  # 190 bits
VISIBLE_PREFIX = 12  # "hk_test_" + four characters


def _new_secret(livemode: bool) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return ("hk_live_" if livemode else "hk_test_") + body


def api_key_payload(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.pk,
        "participant": key.participant_id,
        "livemode": key.livemode,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
    }


def _scopes_for(participant: Participant, requested: list[str] | None) -> list[str]:
    allowed = ROLE_SCOPES[participant.role]
    if requested is None:
        return sorted(allowed)
    unknown = sorted(set(requested) - allowed)
    if unknown:
        raise errors.InvalidRequest(
            f"A {participant.role} key cannot carry the scope {unknown[0]!r}.",
            code="scope_invalid",
            param="scopes",
        )
    if not requested:
        raise errors.InvalidRequest(
            "A key needs at least one scope.", code="scope_invalid", param="scopes"
        )
    return sorted(set(requested))


def _create(
    *, participant: Participant, livemode: bool, scopes: list[str], name: str
) -> tuple[ApiKey, str]:
    secret = _new_secret(livemode)
    key = ApiKey.objects.create(
        participant=participant,
        livemode=livemode,
        name=name,
        prefix=secret[:VISIBLE_PREFIX],
        key_hash=keyed_hash(secret),
        scopes=scopes,
    )
    return key, secret


@transaction.atomic(durable=True)
def api_key_create(
    *,
    participant_id: str,
    actor: Principal,
    scopes: list[str] | None = None,
    name: str = "",
) -> tuple[ApiKey, str]:
    """Issue a key in the actor's own mode (a test key cannot mint live keys). Returns the key
    and its secret, which is never retrievable again."""
    participant = Participant.objects.filter(pk=participant_id).first()
    if participant is None:
        raise errors.NotFound(param="participant")
    if not participant.is_active:
        raise errors.Conflict("The participant is not active.", code="participant_inactive")
    key, secret = _create(
        participant=participant,
        livemode=actor.livemode,
        scopes=_scopes_for(participant, scopes),
        name=name,
    )
    event_emit(type="api_key.created", owner=participant, actor=actor, data=api_key_payload(key))
    return key, secret


def issue_key_unaudited(
    *, participant: Participant, livemode: bool, name: str = ""
) -> tuple[ApiKey, str]:
    """For the ``hub seed`` and ``hub keys`` commands on the operator's own machine."""
    return _create(
        participant=participant,
        livemode=livemode,
        scopes=sorted(ROLE_SCOPES[participant.role]),
        name=name,
    )


def _owned_key(*, api_key_id: str, actor: Principal) -> ApiKey:
    queryset = ApiKey.objects.select_for_update(of=("self",)).select_related("participant")
    if not actor.is_operator:
        queryset = queryset.filter(participant=actor.participant)
    key = queryset.filter(pk=api_key_id).first()
    if key is None:
        raise errors.NotFound()
    if key.livemode != actor.livemode:
        raise errors.NotFound()
    return key


@transaction.atomic(durable=True)
def api_key_revoke(*, api_key_id: str, actor: Principal) -> ApiKey:
    key = _owned_key(api_key_id=api_key_id, actor=actor)
    if key.revoked_at is not None:
        raise errors.Conflict("The key is already revoked.", code="api_key_revoked")
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    api_key_cache_clear_on_commit()
    event_emit(
        type="api_key.revoked", owner=key.participant, actor=actor, data=api_key_payload(key)
    )
    return key


@transaction.atomic(durable=True)
def api_key_rotate(
    *, api_key_id: str, actor: Principal, overlap_seconds: int
) -> tuple[ApiKey, str]:
    """A new key with the same scopes; the old one keeps working for ``overlap_seconds`` so that
    deployments can switch without an outage."""
    if not 0 <= overlap_seconds <= hub_settings.API_KEY_ROTATION_MAX_OVERLAP_SECONDS:
        raise errors.InvalidRequest(
            f"expires_in must be 0 to {hub_settings.API_KEY_ROTATION_MAX_OVERLAP_SECONDS} seconds.",
            code="parameter_invalid",
            param="expires_in",
        )
    old = _owned_key(api_key_id=api_key_id, actor=actor)
    # The successor inherits the old key's scopes: a narrower key must not mint a wider one.
    wider = sorted(set(old.scopes) - actor.scopes)
    if wider:
        raise errors.PermissionDenied(
            f"This key lacks the scope {wider[0]!r} of the key to rotate.", code="scope_missing"
        )
    now = timezone.now()
    if not old.is_usable(now):
        raise errors.Conflict("Only a usable key can be rotated.", code="api_key_revoked")
    if old.replaced_by_id is not None:
        raise errors.Conflict("The key has already been rotated.", code="api_key_rotated")
    new, secret = _create(
        participant=old.participant, livemode=old.livemode, scopes=list(old.scopes), name=old.name
    )
    expires = now + timedelta(seconds=overlap_seconds)
    old.expires_at = expires if old.expires_at is None else min(old.expires_at, expires)
    old.replaced_by = new
    old.save(update_fields=["expires_at", "replaced_by"])
    api_key_cache_clear_on_commit()
    event_emit(
        type="api_key.rotated",
        owner=old.participant,
        actor=actor,
        data={**api_key_payload(new), "replaces": old.pk},
    )
    return new, secret


class _KeyCache:
    """Authenticated keys with their participants, per process, for ``API_KEY_CACHE_SECONDS``.

    A request then authenticates without a database round trip. Revoking, rotating or suspending
    clears this process's cache when the change commits; other processes see it when their entry
    expires, so the setting bounds how long a revoked key or suspended participant can still be
    served there. 0 turns the cache off. Entries are stored as column values, and every hit builds
    fresh model instances, so no request sees another's objects."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, tuple[object, ...], tuple[object, ...]]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> ApiKey | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] <= time.monotonic():
            return None
        key = ApiKey.from_db("default", _KEY_FIELDS, entry[1])
        key.participant = Participant.from_db("default", _PARTICIPANT_FIELDS, entry[2])
        return key

    def put(self, digest: str, key: ApiKey, ttl: float) -> None:
        values = tuple(getattr(key, name) for name in _KEY_FIELDS)
        participant = tuple(getattr(key.participant, name) for name in _PARTICIPANT_FIELDS)
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + ttl, values, participant)

    def touch(self, digest: str, last_used_at: object) -> None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                values = list(entry[1])
                values[_KEY_FIELDS.index("last_used_at")] = last_used_at
                self._entries[digest] = (entry[0], tuple(values), entry[2])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_KEY_FIELDS = [field.attname for field in ApiKey._meta.concrete_fields]
_PARTICIPANT_FIELDS = [field.attname for field in Participant._meta.concrete_fields]
key_cache = _KeyCache()


def api_key_cache_clear_on_commit() -> None:
    """Forget this process's authenticated keys now and again when the current transaction
    commits (a request in between may have cached the old state)."""
    key_cache.clear()
    transaction.on_commit(key_cache.clear)


def api_key_authenticate(*, secret: str) -> ApiKey:
    """The key for ``secret``, if it is usable and its participant active; else 401/403."""
    if not secret.startswith(("hk_test_", "hk_live_")) or len(secret) > 100:
        raise errors.AuthenticationFailed()
    digest = keyed_hash(secret)
    ttl = hub_settings.API_KEY_CACHE_SECONDS
    key = key_cache.get(digest) if ttl > 0 else None
    if key is None:
        key = ApiKey.objects.select_related("participant").filter(key_hash=digest).first()
        if key is not None and ttl > 0:
            key_cache.put(digest, key, ttl)
    now = timezone.now()
    if key is None or not key.is_usable(now):
        raise errors.AuthenticationFailed()
    if not key.participant.is_active:
        raise errors.PermissionDenied(
            f"The participant is {key.participant.status}.", code="participant_inactive"
        )
    resolution = timedelta(seconds=hub_settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    if key.last_used_at is None or now - key.last_used_at >= resolution:
        # Coarse on purpose: one write a minute per key, not one per request.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
        key_cache.touch(digest, now)
    return key
