"""Enabling an installed adapter for a participant, and keeping its credentials."""

from __future__ import annotations

import json
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from adapters.errors import AdapterMisconfigured
from adapters.manifest import Capability
from adapters.registry import get_adapter
from hub import errors
from hub.conf import hub_settings
from hub.crypto import encrypt, rotate
from hub.models import AdapterConnection, Participant, Role
from hub.netguard import check_url
from hub.principal import Principal
from hub.services.adapters.inbound import inbound_endpoints_clear_on_commit
from hub.services.events import event_emit, register_event_types

register_event_types(
    "adapter_connection.enabled", "adapter_connection.updated", "adapter_connection.disabled"
)

# Which capabilities a participant of each role may be connected through.
ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.PAYMENT_INSTITUTION: frozenset({Capability.PAYMENT_INSTITUTION}),
    Role.BANK: frozenset(
        {Capability.BANK_PAYOUTS, Capability.BANK_STATEMENTS, Capability.DEALING_RATES}
    ),
    Role.INSURER: frozenset({Capability.INSURER}),
    Role.OPERATOR: frozenset({Capability.RATE_SOURCE, Capability.CREDIT_REGISTRY}),
}


def connection_payload(connection: AdapterConnection) -> dict[str, Any]:
    return {
        "id": connection.pk,
        "participant": connection.participant_id,
        "adapter": connection.adapter,
        "status": connection.status,
        "sandbox": connection.sandbox,
    }


def _check(
    *,
    adapter: str,
    role: str,
    config: dict[str, str],
    credentials: dict[str, str] | None,
    sandbox: bool,
) -> None:
    try:
        manifest = get_adapter(adapter).adapter_class.manifest
    except AdapterMisconfigured as exc:
        raise errors.InvalidRequest(str(exc), code="adapter_unknown", param="adapter") from None
    allowed = ROLE_CAPABILITIES.get(role, frozenset())
    if not manifest.capabilities & allowed:
        raise errors.InvalidRequest(
            f"The {adapter} adapter offers nothing a {role} provides.",
            code="adapter_role_mismatch",
            param="adapter",
        )
    unknown = sorted(set(config) - set(manifest.config_fields))
    if unknown:
        raise errors.InvalidRequest(
            f"The {adapter} adapter has no setting {unknown[0]!r}.",
            code="parameter_unknown",
            param=f"config.{unknown[0]}",
        )
    missing = sorted(set(manifest.config_fields) - set(config))
    if missing:
        raise errors.InvalidRequest(
            f"The {adapter} adapter needs the setting {missing[0]!r}.",
            code="parameter_missing",
            param=f"config.{missing[0]}",
        )
    for key, value in config.items():
        if key.endswith("url"):
            check_url(value, allow_private=sandbox, resolve=False, param=f"config.{key}")
            if not sandbox and not value.startswith("https://"):
                raise errors.InvalidRequest(
                    "Live institutions are reached over https.",
                    code="url_invalid",
                    param=f"config.{key}",
                )
    if credentials is not None:
        wrong = sorted(set(credentials) ^ set(manifest.secret_fields))
        if wrong:
            raise errors.InvalidRequest(
                f"The {adapter} adapter's credentials are {sorted(manifest.secret_fields)}.",
                code="parameter_invalid",
                param=f"credentials.{wrong[0]}",
            )


@transaction.atomic(durable=True)
def adapter_connection_enable(
    *,
    actor: Principal,
    participant_id: str,
    adapter: str,
    config: dict[str, str],
    credentials: dict[str, str],
    sandbox: bool = False,
) -> AdapterConnection:
    participant = Participant.objects.filter(pk=participant_id).first()
    if participant is None:
        raise errors.NotFound(param="participant")
    if sandbox and actor.livemode:
        raise errors.InvalidRequest(
            "Sandbox institutions are for test mode only.",
            code="sandbox_live_mode",
            param="sandbox",
        )
    if sandbox and not hub_settings.SANDBOX_ALLOWED:
        raise errors.InvalidRequest(
            "This hub does not connect sandbox institutions.",
            code="sandbox_disabled",
            param="sandbox",
        )
    _check(
        adapter=adapter,
        role=participant.role,
        config=config,
        credentials=credentials,
        sandbox=sandbox,
    )
    try:
        with transaction.atomic():
            connection = AdapterConnection.objects.create(
                participant=participant,
                adapter=adapter,
                livemode=actor.livemode,
                sandbox=sandbox,
                config=config,
                credentials_encrypted=encrypt(json.dumps(credentials, sort_keys=True)),
            )
    except IntegrityError:
        raise errors.Conflict(
            f"{adapter} is already enabled for this participant in this mode.",
            code="adapter_connection_exists",
        ) from None
    event_emit(
        type="adapter_connection.enabled",
        owner=participant,
        actor=actor,
        data=connection_payload(connection),
    )
    return connection


@transaction.atomic(durable=True)
def adapter_connection_update(
    *,
    actor: Principal,
    connection_id: str,
    config: dict[str, str] | None = None,
    credentials: dict[str, str] | None = None,
    status: str | None = None,
) -> AdapterConnection:
    connection = (
        AdapterConnection.objects.select_for_update(of=("self",))
        .select_related("participant")
        .filter(pk=connection_id, livemode=actor.livemode)
        .first()
    )
    if connection is None:
        raise errors.NotFound()
    if config is not None or credentials is not None:
        _check(
            adapter=connection.adapter,
            role=connection.participant.role,
            config=config if config is not None else connection.config,
            credentials=credentials,
            sandbox=connection.sandbox,
        )
    if config is not None:
        connection.config = config
    if credentials is not None:
        connection.credentials_encrypted = encrypt(json.dumps(credentials, sort_keys=True))
    if status is not None:
        connection.status = status
    connection.updated_at = timezone.now()
    connection.save()
    inbound_endpoints_clear_on_commit()
    kind = "disabled" if status == AdapterConnection.Status.DISABLED else "updated"
    event_emit(
        type=f"adapter_connection.{kind}",
        owner=connection.participant,
        actor=actor,
        data=connection_payload(connection),
    )
    return connection


def adapter_credentials_reencrypt() -> int:
    """Re-encrypt every stored credential under the newest ``HUB_ENCRYPTION_KEYS`` key, one row at
    a time, so that the old key can be retired while the hub keeps running."""
    count = 0
    for pk in AdapterConnection.objects.exclude(credentials_encrypted="").values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            row = AdapterConnection.objects.select_for_update().get(pk=pk)
            row.credentials_encrypted = rotate(row.credentials_encrypted)
            row.save(update_fields=["credentials_encrypted"])
            inbound_endpoints_clear_on_commit()
        count += 1
    return count
