"""API keys: issued by an operator, shown once, stored as a keyed hash, revoked or rotated."""

from __future__ import annotations

import secrets
import string
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
    queryset = ApiKey.objects.select_for_update().select_related("participant")
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
    event_emit(
        type="api_key.rotated",
        owner=old.participant,
        actor=actor,
        data={**api_key_payload(new), "replaces": old.pk},
    )
    return new, secret


def api_key_authenticate(*, secret: str) -> ApiKey:
    """The key for ``secret``, if it is usable and its participant active; else 401/403."""
    if not secret.startswith(("hk_test_", "hk_live_")) or len(secret) > 100:
        raise errors.AuthenticationFailed()
    key = ApiKey.objects.select_related("participant").filter(key_hash=keyed_hash(secret)).first()
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
    return key
