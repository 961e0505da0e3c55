from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from hub.crypto import keyed_hash
from hub.models import (
    ApiKey,
    Event,
    IdempotencyRecord,
    Participant,
    Role,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.factories import issue_key, make_participant

pytest_plugins = ["tests.support.worker", "tests.support.receiver", "tests.support.sandboxes"]


@dataclass
class Tenant:
    participant: Participant
    key: str

    @property
    def id(self) -> str:
        return self.participant.pk


class Api:
    """A thin JSON client: ``api.post("/v1/x", {"a": 1}, key=k, idempotency_key="...")``."""

    def __init__(self) -> None:
        self.client = Client()

    def _headers(
        self, key: str | None, idempotency_key: str | None, extra: dict[str, str]
    ) -> dict[str, str]:
        headers = dict(extra)
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def get(
        self,
        path: str,
        *,
        key: str | None = None,
        params: dict[str, Any] | None = None,
        **headers: str,
    ) -> Any:
        return self.client.get(path, params or {}, headers=self._headers(key, None, headers))

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
        **headers: str,
    ) -> Any:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(
            path,
            data,
            content_type=content_type,
            headers=self._headers(key, idempotency_key, headers),
        )

    def request(self, method: str, path: str, *, key: str | None = None, body: Any = None) -> Any:
        if method == "GET":
            return self.get(path, key=key)
        return self.post(path, body if body is not None else {}, key=key)


@pytest.fixture(autouse=True)
def _hub_account_ids_forgotten() -> None:
    """The process's memory of the hub's account ids holds only across one database's life."""
    from settlement.payouts import hub_account_ids_clear

    hub_account_ids_clear()


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def tenants(db: None) -> dict[str, Tenant]:
    """One participant per role with a test key each, plus ``other_merchant`` and ``other_bank``
    for cross-tenant checks."""
    result: dict[str, Tenant] = {}
    for role in Role.values:
        country = "KR" if role == Role.PAYMENT_INSTITUTION else "CN"
        participant = make_participant(role=role, country=country)
        result[role] = Tenant(participant, issue_key(participant))
    for name, role in (("other_merchant", Role.MERCHANT), ("other_bank", Role.BANK)):
        participant = make_participant(role=role, country="KR")
        result[name] = Tenant(participant, issue_key(participant))
    return result


def error_of(response: Any) -> dict[str, Any]:
    """The API error object of a response, checked for shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"type", "code", "message", "param", "request_id"} <= set(error), error
    assert error["request_id"] == response["Request-Id"]
    return error


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


needs_postgres = pytest.mark.skipif(
    "not __import__('tests.conftest', fromlist=['is_postgres']).is_postgres()",
    reason="needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/hub",
)


def row_counts() -> dict[str, int]:
    """Rows per core table, so that a refused request can be shown to have changed nothing
    (``before = row_counts()`` ... ``assert row_counts() == before``). The audit trail is left out:
    refused writes are recorded there on purpose."""
    models = (Participant, ApiKey, Event, IdempotencyRecord, WebhookEndpoint, WebhookDelivery)
    return {model.__name__: model.objects.count() for model in models}


def api_key_of(secret: str) -> ApiKey:
    """The stored row of the key whose secret is ``secret``."""
    return ApiKey.objects.get(key_hash=keyed_hash(secret))
