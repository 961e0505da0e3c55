"""Builds an adapter for one call: its configuration, decrypted credentials, and a HubHttpClient
whose circuit state lives in the database (shared by every worker process) and whose attempts
are stored as ``OutboundAttempt`` rows."""

from __future__ import annotations

import functools
import json
import ssl
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
from django.db import transaction

from adapters.capabilities import Adapter
from adapters.http import AttemptRecord, AttemptRecorder, ClientPolicy, HubHttpClient
from adapters.registry import get_adapter
from hub.conf import hub_settings
from hub.crypto import decrypt
from hub.models import AdapterConnection, CircuitState, OutboundAttempt


class DbBreakerStore:
    """Circuit breaker state in ``CircuitState`` rows. Each check is its own short transaction;
    the closed, healthy path reads one row and writes nothing."""

    def allow(self, key: str, *, now: float, threshold: int, cooldown: float) -> bool:
        state = CircuitState.objects.filter(pk=key).only("opened_at").first()
        if state is None or state.opened_at is None:
            return True
        with transaction.atomic():
            state = CircuitState.objects.select_for_update().filter(pk=key).first()
            if state is None or state.opened_at is None:
                return True
            moment = datetime.fromtimestamp(now, UTC)
            if moment - state.opened_at < timedelta(seconds=cooldown):
                return False
            # Half-open: one trial call per cool-down, even if the process making it died.
            if state.probing and moment - state.updated_at < timedelta(seconds=cooldown):
                return False
            state.probing = True
            state.updated_at = moment
            state.save(update_fields=["probing", "updated_at"])
            return True

    def record(self, key: str, *, ok: bool, now: float, threshold: int) -> None:
        moment = datetime.fromtimestamp(now, UTC)
        if ok:
            CircuitState.objects.filter(pk=key).exclude(
                failures=0, opened_at__isnull=True, probing=False
            ).update(failures=0, opened_at=None, probing=False, updated_at=moment)
            return
        with transaction.atomic():
            CircuitState.objects.get_or_create(pk=key)
            state = CircuitState.objects.select_for_update().get(pk=key)
            state.failures += 1
            if state.failures >= threshold or state.opened_at is not None:
                state.opened_at = moment
            state.probing = False
            state.updated_at = moment
            state.save()

    def state(self, key: str) -> str:
        row = CircuitState.objects.filter(pk=key).first()
        return "closed" if row is None or row.opened_at is None else "open"


def attempt_recorder(connection_id: str, operation_id: str | None) -> AttemptRecorder:
    def record(attempt: AttemptRecord) -> None:
        OutboundAttempt.objects.create(
            connection_id=connection_id,
            operation_id=operation_id,
            name=attempt.operation,
            attempt=attempt.attempt,
            method=attempt.method,
            url=attempt.url[:2000],
            request_headers=attempt.request_headers,
            request_body=attempt.request_body,
            status_code=attempt.status_code,
            response_body=attempt.response_body,
            error=attempt.error[:300],
            result=attempt.result,
            duration_ms=attempt.duration_ms,
            started_at=attempt.started_at,
        )

    return record


def connection_credentials(connection: AdapterConnection) -> dict[str, str]:
    if not connection.credentials_encrypted:
        return {}
    value = json.loads(decrypt(connection.credentials_encrypted))
    assert isinstance(value, dict)
    return {str(k): str(v) for k, v in value.items()}


def client_policy(connection: AdapterConnection) -> ClientPolicy:
    hosts = {
        urlsplit(str(url)).hostname for key, url in connection.config.items() if key.endswith("url")
    }
    return ClientPolicy(
        allowed_hosts=frozenset(h for h in hosts if h),
        allow_private=connection.sandbox,
        connect_timeout=hub_settings.ADAPTER_CONNECT_TIMEOUT,
        read_timeout=hub_settings.ADAPTER_READ_TIMEOUT,
        max_attempts=hub_settings.ADAPTER_MAX_ATTEMPTS,
        breaker_threshold=hub_settings.ADAPTER_BREAKER_THRESHOLD,
        breaker_cooldown=hub_settings.ADAPTER_BREAKER_COOLDOWN,
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's verifying TLS context, built once per process: building one costs ~60 ms, and every
    submit, sync and inbound notification builds a client."""
    return httpx.create_ssl_context(trust_env=False)


def build_adapter(connection: AdapterConnection, *, operation_id: str | None = None) -> Adapter:
    """An adapter instance for one unit of work. No transaction may be open while it calls out."""
    installed = get_adapter(connection.adapter)
    credentials = connection_credentials(connection)
    client = HubHttpClient(
        participant_id=connection.participant_id,
        adapter=connection.adapter,
        policy=client_policy(connection),
        breaker=DbBreakerStore(),
        recorder=attempt_recorder(connection.pk, operation_id),
        secrets=tuple(credentials.values()),
        transport=httpx.HTTPTransport(verify=_tls_context()),
    )
    return installed.adapter_class(
        client=client, config=dict(connection.config), secrets=credentials
    )
