from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from hub import errors
from hub.models import Participant
from hub.principal import Principal
from hub.registration import is_valid_registration_id, normalise
from hub.services.api_keys import api_key_cache_clear_on_commit
from hub.services.events import event_emit

_ID_NAMES = {
    "CN": "an 18-character unified social credit code (GB 32100-2015)",
    "KR": "a 10-digit business registration number",
}


def participant_payload(participant: Participant) -> dict[str, Any]:
    return {
        "id": participant.pk,
        "role": participant.role,
        "legal_name": participant.legal_name,
        "country": participant.country,
        "registration_id": participant.registration_id,
        "status": participant.status,
    }


def _check_registration(country: str, registration_id: str) -> str:
    value = normalise(registration_id)
    if not is_valid_registration_id(country, value):
        raise errors.InvalidRequest(
            f"registration_id is not {_ID_NAMES[country]} with a valid check character.",
            code="registration_id_invalid",
            param="registration_id",
        )
    return value


def participant_register(
    *, role: str, legal_name: str, country: str, registration_id: str, metadata: dict[str, str]
) -> Participant:
    """Create a participant after checking its registration id; no event (used by seeding)."""
    value = _check_registration(country, registration_id)
    try:
        with transaction.atomic():
            return Participant.objects.create(
                role=role,
                legal_name=legal_name,
                country=country,
                registration_id=value,
                metadata=metadata,
            )
    except IntegrityError:
        raise errors.Conflict(
            "A participant with this registration id already exists.",
            code="participant_exists",
            param="registration_id",
        ) from None


@transaction.atomic(durable=True)
def participant_create(
    *,
    actor: Principal,
    role: str,
    legal_name: str,
    country: str,
    registration_id: str,
    metadata: dict[str, str] | None = None,
) -> Participant:
    participant = participant_register(
        role=role,
        legal_name=legal_name,
        country=country,
        registration_id=registration_id,
        metadata=metadata or {},
    )
    event_emit(
        type="participant.created",
        owner=participant,
        actor=actor,
        data=participant_payload(participant),
    )
    return participant


@transaction.atomic(durable=True)
def participant_update(
    *,
    participant_id: str,
    actor: Principal,
    legal_name: str | None = None,
    status: str | None = None,
    metadata: dict[str, str] | None = None,
) -> Participant:
    participant = Participant.objects.select_for_update().filter(pk=participant_id).first()
    if participant is None:
        raise errors.NotFound()
    if participant.status == Participant.Status.CLOSED:
        raise errors.Conflict("A closed participant cannot be changed.", code="participant_closed")
    if participant.pk == actor.participant.pk and status not in (None, Participant.Status.ACTIVE):
        raise errors.Conflict(
            "An operator cannot suspend or close itself.", code="participant_self"
        )
    if legal_name is not None:
        participant.legal_name = legal_name
    if status is not None:
        participant.status = status
    if metadata is not None:
        participant.metadata = metadata
    participant.updated_at = timezone.now()
    participant.save()
    api_key_cache_clear_on_commit()
    event_emit(
        type="participant.updated",
        owner=participant,
        actor=actor,
        data=participant_payload(participant),
    )
    return participant
