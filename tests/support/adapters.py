"""Helpers for the hub's side of adapters: sandbox institutions driven over their control API,
connections made as the operator, requests, and readers of what the hub recorded."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpx
from django.apps import apps

from adapters.interface import Amount, BankAccount, PayinRequest, PayoutRequest
from adapters.sandbox.base import SandboxServer
from hub.models import AdapterConnection, AdapterOperation, Event, OutboundAttempt, Participant
from hub.services.adapters.connections import adapter_connection_enable
from tests.factories import principal_for

TLS = ssl.create_default_context()  # built once: every httpx client would build its own

# Credentials the hub holds for the sandboxes (the sandboxes are started with the same ones).
BANK_CLIENT_ID = "weihai-hub-test"
BANK_SIGNING_KEY = "bank-signing-key-held-by-the-hub-0123456789"
PSP_SECRET_KEY = "sk_test_hub_held_secret_key_0123456789"
PSP_WEBHOOK_SECRET = "whsec_hub_held_webhook_secret_0123456789"

# Fast outbound calls: the sandboxes hold a "timeout" connection longer than the client waits.
CLIENT_READ_TIMEOUT = 0.5
SANDBOX_TIMEOUT = 3.0


def fast_adapters(settings: Any, **knobs: Any) -> None:
    """Override ``HUB["ADAPTER_*"]`` knobs for one test through pytest-django's ``settings``
    fixture (a new dict, so that the fixture restores the old one)."""
    settings.HUB = {
        **settings.HUB,
        "ADAPTER_CONNECT_TIMEOUT": 1.0,
        "ADAPTER_READ_TIMEOUT": CLIENT_READ_TIMEOUT,
        **knobs,
    }


class Control:
    """A sandbox institution's control API over HTTP (``adapters.sandbox.base``)."""

    def __init__(self, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.http = httpx.Client(trust_env=False, verify=TLS, timeout=10)

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(self.sandbox.url("/_sandbox" + path), json=body or {})
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str) -> Any:
        response = self.http.get(self.sandbox.url("/_sandbox" + path))
        assert response.status_code == 200, response.text
        return response.json()

    def fault(self, operation: str, fault: str, count: int = 1) -> None:
        self.post("/faults", {"operation": operation, "fault": fault, "count": count})

    def configure(self, **values: Any) -> Any:
        return self.post("/config", values)

    def log(self, operation: str | None = None) -> list[dict[str, Any]]:
        query = f"?operation={operation}" if operation else ""
        return list(self.get("/log" + query)["data"])

    def processed(self, operation: str) -> list[dict[str, Any]]:
        """Requests of ``operation`` that the institution acted on."""
        return [e for e in self.log(operation) if e["processed"]]

    def state(self) -> dict[str, Any]:
        return dict(self.get("/state"))

    # -- the bank

    def payouts(self, reference: str | None = None) -> list[dict[str, Any]]:
        return [
            p
            for p in self.state()["payouts"]
            if reference is None or p["end_to_end_id"] == reference
        ]

    # -- the payment institution

    def intents(self) -> list[dict[str, Any]]:
        return list(self.state()["payment_intents"])

    def refunds(self) -> list[dict[str, Any]]:
        return list(self.state()["refunds"])


def connect(
    *,
    operator: Participant,
    participant: Participant,
    adapter: str,
    base_url: str,
) -> AdapterConnection:
    """Enable ``adapter`` for ``participant`` in test mode against a sandbox, as the operator."""
    if adapter == "bank":
        config = {"base_url": base_url, "client_id": BANK_CLIENT_ID}
        credentials = {"signing_key": BANK_SIGNING_KEY}
    else:
        config = {"base_url": base_url}
        credentials = {"secret_key": PSP_SECRET_KEY, "webhook_secret": PSP_WEBHOOK_SECRET}
    return adapter_connection_enable(
        actor=principal_for(operator),
        participant_id=participant.pk,
        adapter=adapter,
        config=config,
        credentials=credentials,
        sandbox=True,
    )


BENEFICIARY = BankAccount(
    account_number="6217000010001234567",
    account_name="Weihai Haiyang Trading Co., Ltd.",
    bank_code="CCBCCNBJ",
    country="CN",
)


def payout(reference: str, minor: int = 123_45, currency: str = "CNY") -> PayoutRequest:
    return PayoutRequest(
        reference=reference,
        amount=Amount(minor, currency),
        beneficiary=BENEFICIARY,
        remittance_info=f"settlement {reference}",
    )


def payin(reference: str, minor: int = 150_000, currency: str = "KRW") -> PayinRequest:
    return PayinRequest(
        reference=reference, amount=Amount(minor, currency), description=f"order {reference}"
    )


def attempts(operation: AdapterOperation | str) -> list[tuple[str, int, str, int | None]]:
    """(name, attempt number, result, HTTP status) of every attempt of ``operation``, in order."""
    return list(
        OutboundAttempt.objects.filter(operation=operation)
        .order_by("id")
        .values_list("name", "attempt", "result", "status_code")
    )


def events(operation: AdapterOperation) -> list[str]:
    """The types of the events written about ``operation``, oldest first."""
    return [
        e.type
        for e in Event.objects.filter(type__startswith="adapter_operation.").order_by("id")
        if e.data.get("id") == operation.pk
    ]


def reload(operation: AdapterOperation) -> AdapterOperation:
    return AdapterOperation.objects.get(pk=operation.pk)


def rows_holding(secret: str) -> list[str]:
    """Every stored row, in every table of the hub, whose values contain ``secret``."""
    found = []
    for model in apps.get_app_config("hub").get_models():
        for row in model._default_manager.values():
            if any(secret in _text(value) for value in row.values()):
                found.append(f"{model.__name__} {row.get('id', row.get('key'))}")
    return found


def _text(value: Any) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("latin-1")
    return str(value)


def adapter_counts() -> dict[str, int]:
    """Rows of every adapter table, to show that a refused call changed nothing."""
    from hub.models import CircuitState, InboundWebhook, OperatorTask

    models: Iterable[Any] = (
        AdapterConnection,
        AdapterOperation,
        OutboundAttempt,
        CircuitState,
        InboundWebhook,
        OperatorTask,
        Event,
    )
    return {model.__name__: model.objects.count() for model in models}


def bank_payout_directly(
    bank: SandboxServer, *, reference: str, amount: str, currency: str = "CNY"
) -> dict[str, Any]:
    """A payout made at the bank by someone else than the hub (another system, a clerk) for one
    of the hub's references: signed as the bank wants, sent without going through the hub."""
    import json
    import time

    from adapters.sandbox.bank import sign

    body = json.dumps(
        {
            "end_to_end_id": reference,
            "amount": amount,
            "currency": currency,
            "creditor": {
                "name": BENEFICIARY.account_name,
                "account_number": BENEFICIARY.account_number,
                "bank_code": BENEFICIARY.bank_code,
                "country": BENEFICIARY.country,
            },
        }
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Client-Id": BANK_CLIENT_ID,
        "X-Timestamp": timestamp,
        "X-Signature": sign(BANK_SIGNING_KEY, timestamp, "POST", "/payouts", body),
    }
    with httpx.Client(trust_env=False, verify=TLS, timeout=10) as http:
        response = http.post(bank.url("/payouts"), content=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result
