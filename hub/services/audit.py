from __future__ import annotations

from hub.fastinsert import insert
from hub.models import AuditEntry
from hub.principal import Principal


def audit_record(
    *,
    actor: Principal,
    method: str,
    path: str,
    status_code: int,
    object_id: str = "",
    user_agent: str = "",
    idempotency_key: str = "",
) -> AuditEntry:
    """Append one row to the audit trail. Also used for reads that must be recorded (regulator
    reads, consented data reads)."""
    entry = AuditEntry(
        participant_id=actor.participant.pk,
        api_key_id=actor.api_key.pk if actor.api_key else "",
        livemode=actor.livemode,
        method=method,
        path=path[:500],
        status_code=status_code,
        object_id=object_id,
        ip_address=actor.ip_address,
        user_agent=user_agent[:300],
        request_id=actor.request_id,
        idempotency_key=idempotency_key[:255],
    )
    insert(entry)
    return entry
