"""``hub demo``: one Korean buyer's order driven end to end through a running hub's API.

The demo is an HTTP client of the hub (httpx) and of the sandbox payment institution's control
API (the buyer "pays" there). It imports nothing of trade, settlement or fx: what it shows is
what any participant's system would see. Each step prints what was sent, the ids and statuses
that came back, and waits on the worker with a progress line; any surprise ends the demo with
the API's error object (``DemoError``), never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx

from hub.transparency.bundle import verify_bundle

STEPS = 11
ROLES = ("operator", "merchant", "regulator")
# An institution's business day follows its country (docs/settlement_runs.md).
TIME_ZONES = {"CN": "Asia/Shanghai", "KR": "Asia/Seoul"}

# The order: a Korean buyer, a B2C retail export (customs mode 9610), 150,000 won.
ORDER_AMOUNT = 150_000
GOODS_AMOUNT = 142_000
SHIPPING_AMOUNT = 8_000
BUYER_NAME = "Kim Minji"
PAYOUT_ACCOUNT = {
    "account_number": "6217000010001234567",
    "account_name": "Weihai Seaside Trading Co., Ltd.",
    "bank_code": "CCBCCNBJ",
    "country": "CN",
    "currency": "CNY",
}


class Stream(Protocol):
    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


class DemoError(Exception):
    """A step that did not go as the demo expects: what happened and, when the hub answered,
    its status and error object."""

    def __init__(
        self, message: str, *, status: int | None = None, error: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = dict(error) if error is not None else None


@dataclass(frozen=True)
class Options:
    url: str = "http://127.0.0.1:8000"
    timeout: float = 60.0  # seconds per wait
    out_dir: Path | None = None
    poll_interval: float = 0.25
    request_timeout: float = 15.0
    cutoff: str = "23:00"  # the hub's HUB_SETTLEMENT_CUTOFF


@dataclass
class Results:
    """The ids and balances the summary shows (also what a test reads back)."""

    run_tag: str = ""
    merchant: str = ""
    institution: str = ""
    accounts: dict[str, str] = field(default_factory=dict)  # currency -> account id
    before: dict[str, dict[str, str]] = field(default_factory=dict)
    after: dict[str, dict[str, str]] = field(default_factory=dict)
    order_no: str = ""
    uploads: dict[str, str] = field(default_factory=dict)
    payin: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    quote: dict[str, Any] = field(default_factory=dict)
    conversion: dict[str, Any] = field(default_factory=dict)
    bank_account: str = ""
    payout: dict[str, Any] = field(default_factory=dict)
    receipt: dict[str, Any] = field(default_factory=dict)
    bundle_path: Path | None = None
    bundle_ok: bool = False
    checkpoint: dict[str, Any] = field(default_factory=dict)


def _compact(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _money(value: Mapping[str, Any] | None) -> str:
    if not value:
        return "-"
    return f"{value['amount']} {value['currency']}"


class Demo:
    def __init__(
        self,
        *,
        keys: Mapping[str, str],
        options: Options,
        out: Stream | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        missing = [role for role in ROLES if not keys.get(role)]
        if missing:
            raise DemoError(f"No API key for the {', '.join(missing)} role(s).")
        self.keys = dict(keys)
        self.options = options
        self.out: Stream = out or sys.stdout
        self.http = httpx.Client(
            base_url=options.url.rstrip("/"),
            timeout=options.request_timeout,
            trust_env=False,
            follow_redirects=False,
            transport=transport,
        )
        self.sandbox_http = httpx.Client(
            timeout=options.request_timeout, trust_env=False, follow_redirects=False
        )
        self.results = Results(run_tag=_run_tag())
        self._step = 0
        self._posts = 0
        self._tty = bool(getattr(self.out, "isatty", lambda: False)())

    def close(self) -> None:
        self.http.close()
        self.sandbox_http.close()

    # --- output ---------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, title: str) -> None:
        self._step += 1
        self.say(f"\n[{self._step}/{STEPS}] {title}")

    def detail(self, text: str) -> None:
        self.say(f"      {text}")

    # --- HTTP -----------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        role: str,
        body: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
        show: bool = True,
        shown: Mapping[str, Any] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[role]}"}
        if method == "POST":
            self._posts += 1
            headers["Idempotency-Key"] = f"demo-{self.results.run_tag}-{self._posts}"
        if show:
            sent = f" {_compact(shown or body)}" if body is not None else ""
            if files:
                sent = f" multipart {_compact(dict(data or {}))} + file {files['file'][0]}"
            self.detail(f"{method} {path}{sent}  (as {role})")
        try:
            response = self.http.request(
                method, path, json=body, files=files, data=data, headers=headers
            )
        except httpx.HTTPError as exc:
            raise DemoError(
                f"The hub at {self.options.url} is not reachable: {type(exc).__name__}: {exc}"
            ) from None
        return self._answer(method, path, response, expect)

    @staticmethod
    def _answer(method: str, path: str, response: httpx.Response, expect: tuple[int, ...]) -> Any:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code not in expect:
            error = payload.get("error") if isinstance(payload, dict) else None
            if not isinstance(error, dict):
                error = {"body": response.text[:500]}
            raise DemoError(
                f"{method} {path} answered {response.status_code} "
                f"(expected {' or '.join(map(str, expect))})",
                status=response.status_code,
                error=error,
            )
        if payload is None:
            raise DemoError(f"{method} {path} answered {response.status_code} without JSON.")
        return payload

    def sandbox(self, base_url: str, path: str, body: Mapping[str, Any]) -> Any:
        url = base_url.rstrip("/") + path
        self.detail(f"POST {url} {_compact(body)}  (the sandbox's control API)")
        try:
            response = self.sandbox_http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise DemoError(
                f"The sandbox institution at {base_url} is not reachable: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        return self._answer("POST", url, response, (200,))

    # --- waiting --------------------------------------------------------------------------

    def wait(
        self, what: str, poll: Callable[[], tuple[str, Any]], done: Callable[[Any], bool]
    ) -> Any:
        """Poll until ``done``; each new state is printed (a spinner on a terminal)."""
        start = time.monotonic()
        deadline = start + self.options.timeout
        last = None
        frames = "|/-\\"
        tick = 0
        while True:
            state, value = poll()
            elapsed = time.monotonic() - start
            if state != last:
                if self._tty:
                    self.out.write("\r\x1b[K")
                self.detail(f"... {what}: {state} ({elapsed:.1f} s)")
                last = state
            if done(value):
                return value
            if time.monotonic() > deadline:
                if self._tty:
                    self.out.write("\r\x1b[K")
                raise DemoError(
                    f"Timed out after {self.options.timeout:g} s waiting for {what} "
                    f"(last seen: {state}). Is the hub's worker (and beat) running?"
                )
            if self._tty:
                self.out.write(f"\r      {frames[tick % 4]} waiting for {what} ({elapsed:.0f} s)")
                self.out.flush()
                tick += 1
            time.sleep(self.options.poll_interval)

    # --- the steps ------------------------------------------------------------------------

    def run(self) -> Results:
        try:
            self.keys_step()
            self.accounts_step()
            self.documents_step()
            self.payin_step()
            self.verification_step()
            self.settlement_step()
            self.conversion_step()
            self.payout_step()
            self.receipt_step()
            self.offline_step()
            self.summary_step()
        finally:
            if self._tty:
                self.out.write("\r\x1b[K")
        return self.results

    def keys_step(self) -> None:
        self.step("Keys: the sandbox participants")
        health = self.call("GET", "/v1/health", role="operator", show=False)
        self.detail(f"hub {self.options.url}: {health.get('status', 'ok')}")
        for role in ROLES:
            me = self.call("GET", "/v1/me", role=role, show=False)
            participant = me.get("participant") or {}
            pid = participant.get("id") if isinstance(participant, dict) else participant
            name = participant.get("legal_name", "") if isinstance(participant, dict) else ""
            if me.get("livemode"):
                raise DemoError(f"The {role} key is a live key: the demo runs in test mode only.")
            if role == "merchant":
                self.results.merchant = str(pid)
            self.detail(f"{role:<10} {pid}  {name}  key {self.keys[role][:12]}...")

    def accounts_step(self) -> None:
        self.step("The merchant's KRW and CNY settlement accounts")
        for currency in ("KRW", "CNY"):
            found = self.call(
                "GET",
                f"/v1/accounts?kind=merchant_settlement&currency={currency}&limit=1",
                role="merchant",
            )["data"]
            if found:
                account = found[0]
                self.detail(f"found {account['id']} ({currency})")
            else:
                account = self.call(
                    "POST",
                    "/v1/accounts",
                    role="merchant",
                    body={"currency": currency, "kind": "merchant_settlement"},
                    expect=(201,),
                )
                self.detail(f"opened {account['id']} ({currency})")
            self.results.accounts[currency] = account["id"]
            self.results.before[currency] = account["balances"]
            self.detail(f"  balance {_balances(account['balances'])}")

    def documents_step(self) -> None:
        tag = self.results.run_tag
        order_no = f"DEMO-{tag}"
        self.results.order_no = order_no
        self.step(f"Trade documents for order {order_no}, uploaded as bulk files")
        now = datetime.now(UTC).replace(microsecond=0)
        buyer_id = f"KR-BUYER-{tag}"
        files = {
            "order": {
                "order_no": order_no,
                "trade_type": "B2C",
                "customs_mode": "9610",
                "buyer_name": BUYER_NAME,
                "buyer_id": buyer_id,
                "buyer_country": "KR",
                "currency": "KRW",
                "amount": str(ORDER_AMOUNT),
                "goods_amount": str(GOODS_AMOUNT),
                "shipping_amount": str(SHIPPING_AMOUNT),
                "tax_amount": "0",
                "ordered_at": _rfc3339(now - timedelta(minutes=30)),
            },
            "payment_record": {
                "payment_no": f"PAY-{tag}",
                "order_no": order_no,
                "payer_name": BUYER_NAME,
                "payer_id": buyer_id,
                "payer_country": "KR",
                "institution_name": "Incheon Easy Pay",
                "currency": "KRW",
                "amount": str(ORDER_AMOUNT),
                "paid_at": _rfc3339(now - timedelta(minutes=25)),
            },
            "waybill": {
                "waybill_no": f"WB-{tag}",
                "order_no": order_no,
                "carrier": "Weihai-Incheon Ferry Express",
                "consignee_name": BUYER_NAME,
                "destination_country": "KR",
                "shipped_at": _rfc3339(now - timedelta(minutes=5)),
            },
        }
        for kind, row in files.items():
            filename = f"{kind}s-{tag}.csv"
            form = {"kind": kind, "mode": "all_or_nothing"}
            upload = self.call(
                "POST",
                "/v1/trade/uploads",
                role="merchant",
                files={"file": (filename, _csv(row), "text/csv")},
                data=form,
                expect=(201,),
            )
            self.detail(
                f"{upload['id']} {kind}: {upload['status']}, "
                f"{upload['rows_accepted']}/{upload['rows_total']} rows accepted"
            )
            if upload["status"] != "accepted":
                raise DemoError(
                    f"The {kind} file was not accepted.",
                    error={"errors": upload.get("errors", [])},
                )
            self.results.uploads[kind] = upload["id"]

    def payin_step(self) -> None:
        self.step("Payin: the Korean buyer pays through the sandbox payment institution")
        institution, base_url = self._institution()
        self.results.institution = institution
        payin = self.call(
            "POST",
            "/v1/payins",
            role="merchant",
            body={
                "account": self.results.accounts["KRW"],
                "amount": {"amount": str(ORDER_AMOUNT), "currency": "KRW"},
                "reference": self.results.order_no,
                "description": f"order {self.results.order_no}",
                "institution": institution,
            },
            expect=(201, 200),
        )
        self.detail(
            f"{payin['id']} {payin['status']}, institution {payin['institution']}, "
            f"payment intent {payin['institution_payment_id']}"
        )
        if not payin.get("institution_payment_id"):
            # The institution has not answered yet; the hub keeps trying (its repair syncs).
            payin = self.wait(
                f"payin {payin['id']} to reach the institution",
                lambda: self._payin_state(payin["id"]),
                lambda p: bool(p.get("institution_payment_id")),
            )
        paid = self.sandbox(
            base_url, f"/_sandbox/payment_intents/{payin['institution_payment_id']}/pay", {}
        )
        intent = paid.get("payment_intent") or {}
        self.detail(
            f"the buyer paid: {intent.get('id')} {intent.get('status')}; the institution "
            f"notifies the hub ({paid.get('event')})"
        )
        payin = self.wait(
            f"payin {payin['id']} (the worker applies what the institution reports)",
            lambda: self._payin_state(payin["id"]),
            lambda p: p["status"] in ("succeeded", "settled", "failed"),
        )
        if payin["status"] == "failed":
            raise DemoError(f"The payin failed: {payin.get('failure_code')}.")
        self.results.payin = payin
        self.detail(f"{payin['id']} {payin['status']} at {payin['succeeded_at']}")

    def _payin_state(self, payin_id: str) -> tuple[str, Any]:
        payin = self.call("GET", f"/v1/payins/{payin_id}", role="merchant", show=False)
        return str(payin["status"]), payin

    def _institution(self) -> tuple[str, str]:
        """The sandbox payment institution whose KRW business day is still open, and its
        sandbox's address. A business day is settled once, and the demo closes it early: a
        second demo on the same day goes through another sandbox payment institution (one an
        earlier demo onboarded whose day is open, or a new one), connected to the same sandbox."""
        connections = self._sandbox_connections()
        runs = self.call("GET", "/v1/settlement_runs?limit=100", role="operator", show=False)
        closed = {
            (run["institution"], run["business_date"])
            for run in runs["data"]
            if run["currency"] == "KRW"
        }
        for n, connection in enumerate(connections):
            institution = str(connection["participant"])
            day, zone = self._business_day(institution)
            if (institution, day.isoformat()) not in closed:
                base_url = str(connection["config"]["base_url"])
                self.detail(
                    f"institution {institution} via {connection['id']} (sandbox {base_url}); "
                    f"its business day {day} ({zone}) is open"
                )
                return institution, base_url
            if n == 0:
                self.detail(
                    f"the KRW business day {day} ({zone}) of the sandbox payment institution "
                    f"{institution} was already closed early by an earlier demo: a day is "
                    "settled once, so this order goes through another sandbox institution"
                )
        return self._onboard_institution(str(connections[0]["config"]["base_url"]))

    def _sandbox_connections(self) -> list[dict[str, Any]]:
        """The enabled test-mode connections to a stripe_like sandbox, oldest (the seeded
        one) first."""
        found: list[dict[str, Any]] = []
        path = "/v1/adapter_connections?limit=100"
        while True:
            page = self.call("GET", path, role="operator", show=False)
            found += page["data"]
            if not page["has_more"] or not page["data"]:
                break
            path = f"/v1/adapter_connections?limit=100&starting_after={page['data'][-1]['id']}"
        connections = sorted(
            (
                c
                for c in found
                if c["adapter"] == "stripe_like"
                and c["status"] == "enabled"
                and c["sandbox"]
                and not c["livemode"]
                and (c.get("config") or {}).get("base_url")
            ),
            key=lambda c: (c["created_at"], c["id"]),
        )
        if not connections:
            raise DemoError(
                "No payment institution is connected to the stripe_like sandbox in test mode: "
                "run `hub seed sandbox` (or start the hub with `make run`)."
            )
        return connections

    def _onboard_institution(self, base_url: str) -> tuple[str, str]:
        """The operator onboards another Korean sandbox payment institution and connects it to
        the sandbox. The sandbox notifies only the seeded connection, so the hub learns of this
        one's payments by its status syncs (beat's repair task, within seconds)."""
        from adapters.sandbox.stripe_like import DEFAULT_SECRET_KEY, DEFAULT_WEBHOOK_SECRET
        from hub.registration import brn_check_digit

        first9 = f"1318{secrets.randbelow(10**5):05d}"
        participant = self.call(
            "POST",
            "/v1/participants",
            role="operator",
            body={
                "role": "payment_institution",
                "legal_name": f"Incheon Easy Pay {self.results.run_tag} (Sandbox)",
                "country": "KR",
                "registration_id": first9 + brn_check_digit(first9),
                "metadata": {"sandbox": "true", "demo": "true"},
            },
            expect=(201,),
        )
        connection = self.call(
            "POST",
            "/v1/adapter_connections",
            role="operator",
            body={
                "participant": participant["id"],
                "adapter": "stripe_like",
                "config": {"base_url": base_url},
                "credentials": {
                    "secret_key": DEFAULT_SECRET_KEY,
                    "webhook_secret": DEFAULT_WEBHOOK_SECRET,
                },
                "sandbox": True,
            },
            shown={
                "participant": participant["id"],
                "adapter": "stripe_like",
                "config": {"base_url": base_url},
                "credentials": {"secret_key": "****", "webhook_secret": "****"},
                "sandbox": True,
            },
            expect=(201,),
        )
        self.detail(
            f"onboarded {participant['id']} ({participant['legal_name']}), connected by "
            f"{connection['id']} to the sandbox {base_url}"
        )
        return str(participant["id"]), base_url

    def _business_day(self, institution: str) -> tuple[date, str]:
        participant = self.call(
            "GET", f"/v1/participants/{institution}", role="operator", show=False
        )
        zone = TIME_ZONES.get(participant.get("country", ""), "Asia/Seoul")
        return business_day(zone, datetime.now(UTC), self.options.cutoff), zone

    def verification_step(self) -> None:
        self.step("Verification of the payin against its documents")
        verification = self.call(
            "POST",
            "/v1/fx/verifications",
            role="merchant",
            body={"payin": self.results.payin["id"], "order_no": self.results.order_no},
            expect=(201, 200),
        )
        self.results.verification = verification
        documents = verification.get("documents") or {}
        self.detail(
            f"{verification['id']} {verification['outcome']}, reasons {verification['reasons']}; "
            f"documents {_compact(documents)}"
        )
        if verification["outcome"] != "verified" or verification["reasons"]:
            raise DemoError(
                f"The payin was not verified: {verification['outcome']} "
                f"({', '.join(verification['reasons']) or 'no reasons'})."
            )

    def settlement_step(self) -> None:
        self.step("Settlement: the operator closes the institution's KRW business day early")
        day, zone = self._business_day(self.results.institution)
        run = self.call(
            "POST",
            "/v1/settlement_runs",
            role="operator",
            body={
                "institution": self.results.institution,
                "currency": "KRW",
                "business_date": day.isoformat(),
                "close_early": True,
            },
            expect=(202, 200),
        )
        self.detail(
            f"{run['id']} {run['status']}, business day {day} ({zone}), cutoff {run['cutoff_at']}"
        )
        run = self.wait(
            f"run {run['id']} (the worker executes it)",
            lambda: self._run_state(run["id"]),
            lambda r: r["status"] == "completed",
        )
        self.detail(
            f"{run['id']} completed: {run['payins_count']} payin(s), gross {_money(run['gross'])}, "
            f"fees {_money(run['fees'])}, net {_money(run['net'])} ({run['direction']})"
        )
        self.results.run = run
        payin = self.wait(
            f"payin {self.results.payin['id']} settled",
            lambda: self._payin_state(self.results.payin["id"]),
            lambda p: p["status"] == "settled",
        )
        if payin.get("settlement_run") != run["id"]:
            raise DemoError(
                f"The payin was settled by {payin.get('settlement_run')}, not by {run['id']}."
            )
        self.results.payin = payin
        self.detail(
            f"{payin['id']} settled: {_money(payin['settled_amount'])} less fee "
            f"{_money(payin['fee'])}"
        )

    def _run_state(self, run_id: str) -> tuple[str, Any]:
        run = self.call("GET", f"/v1/settlement_runs/{run_id}", role="operator", show=False)
        return str(run["status"]), run

    def conversion_step(self) -> None:
        self.step("Conversion of what was settled (net of fees) from KRW to CNY")
        payin = self.results.payin
        net = int(payin["settled_amount"]["amount"]) - int(payin["fee"]["amount"])
        quote = self.call(
            "POST",
            "/v1/fx/quotes",
            role="merchant",
            body={
                "sell": {"currency": "KRW", "amount": str(net)},
                "buy": {"currency": "CNY"},
                "lock_seconds": 60,
            },
            expect=(201,),
        )
        self.results.quote = quote
        rate = quote.get("reference_rate") or {}
        self.detail(
            f"{quote['id']} {quote['status']}: sell {_money(quote['sell'])}, buy "
            f"{_money(quote['buy'])}, all-in {quote['all_in_rate']} (reference {rate.get('rate')} "
            f"{rate.get('source')} {rate.get('date')}, margin {quote['margin'].get('bps')} bps), "
            f"expires {quote['expires_at']}"
        )
        conversion = self.call(
            "POST",
            "/v1/fx/conversions",
            role="merchant",
            body={
                "quote": quote["id"],
                "sell_account": self.results.accounts["KRW"],
                "buy_account": self.results.accounts["CNY"],
                "reference": f"demo-fx-{self.results.run_tag}",
            },
            expect=(201, 200),
        )
        self.results.conversion = conversion
        self.detail(
            f"{conversion['id']}: sold {_money(conversion['sell'])} (margin "
            f"{_money(conversion['margin'])}), bought {_money(conversion['buy'])}"
        )

    def payout_step(self) -> None:
        self.step("Payout of the CNY through the sandbox bank")
        account = self.call(
            "POST",
            "/v1/payout_bank_accounts",
            role="merchant",
            body=PAYOUT_ACCOUNT,
            expect=(201, 200),
        )
        self.results.bank_account = account["id"]
        self.detail(f"{account['id']} {account['bank_code']} {account['account_number']}")
        amount = self.results.conversion["buy"]
        payout = self.call(
            "POST",
            "/v1/payouts",
            role="merchant",
            body={
                "source_account": self.results.accounts["CNY"],
                "bank_account": account["id"],
                "amount": amount,
                "reference": f"demo-po-{self.results.run_tag}",
            },
            expect=(201, 200),
        )
        self.detail(f"{payout['id']} {payout['status']} {_money(payout['amount'])}")
        payout = self.wait(
            f"payout {payout['id']} (the worker sends it; the bank pays it)",
            lambda: self._payout_state(payout["id"]),
            lambda p: p["status"] in ("paid", "failed"),
        )
        if payout["status"] != "paid":
            raise DemoError(
                f"The payout failed: {payout.get('failure_code')} {payout.get('failure_reason')}."
            )
        self.results.payout = payout
        self.detail(f"{payout['id']} paid (bank operation {payout.get('bank_operation')})")

    def _payout_state(self, payout_id: str) -> tuple[str, Any]:
        payout = self.call("GET", f"/v1/payouts/{payout_id}", role="merchant", show=False)
        return str(payout["status"]), payout

    def receipt_step(self) -> None:
        self.step("The receipt: the regulator finds it and fetches its proof")
        payin_id = self.results.payin["id"]
        path = f"/v1/receipts?merchant={self.results.merchant}&limit=100"
        self.detail(f"GET {path}  (as regulator, until the payin's receipt appears)")
        receipt = self.wait(
            f"the receipt of {payin_id} (the worker issues it after the run)",
            lambda: self._receipt_state(path, payin_id),
            lambda r: r is not None,
        )
        self.results.receipt = receipt
        self.detail(
            f"{receipt['id']} {receipt['direction']} {_money(receipt['amount'])}, outcome "
            f"{receipt['outcome']}, settled on {receipt['settled_on']}, "
            f"leaf {receipt['leaf_index']}, key {receipt['key_id']}"
        )
        bundle = self.call("GET", f"/v1/receipts/{receipt['id']}/proof", role="regulator")
        out_dir = self.options.out_dir or Path(tempfile.mkdtemp(prefix="hub-demo-"))
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{receipt['id']}.json"
        target.write_text(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
        self.results.bundle_path = target
        log = bundle.get("log") or {}
        self.detail(
            f"bundle: leaf {log.get('leaf_index')} of a tree of {log.get('tree_size')}, "
            f"{len(log.get('inclusion_proof') or [])} proof hashes; saved to {target}"
        )

    def _receipt_state(self, path: str, payin_id: str) -> tuple[str, Any]:
        rows = self.call("GET", path, role="regulator", show=False)["data"]
        for row in rows:
            if row.get("payin") == payin_id:
                return "issued", row
        return "not issued yet", None

    def offline_step(self) -> None:
        self.step("Offline verification of the bundle, against the hub's published keys")
        keys = self.call("GET", "/v1/audit/keys", role="regulator")["data"]
        trusted = [key["public_key"] for key in keys]
        for key in keys:
            retired = f", retired {key['retired_at']}" if key.get("retired_at") else ""
            self.detail(f"key {key['key_id']}{retired}")
        path = self.results.bundle_path
        assert path is not None
        bundle = json.loads(path.read_text())
        result = verify_bundle(bundle, trusted_keys=trusted)
        for check in result.checks:
            self.detail(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
        command = " ".join([f"hub audit verify {path}", *(f"--key '{k}'" for k in trusted)])
        self.detail(f"the same from a shell: {command}")
        self.results.bundle_ok = result.ok
        if not result.ok:
            raise DemoError(f"The bundle does not verify: {', '.join(result.failed)}.")

    def summary_step(self) -> None:
        self.step("Summary")
        results = self.results
        for currency, account_id in results.accounts.items():
            account = self.call("GET", f"/v1/accounts/{account_id}", role="merchant", show=False)
            results.after[currency] = account["balances"]
        checkpoint = self.call("GET", "/v1/audit/checkpoints/latest", role="regulator", show=False)
        results.checkpoint = checkpoint
        self.detail("merchant balances (posted / pending / available):")
        for currency in results.accounts:
            self.detail(f"  {currency}  before {_balances(results.before[currency])}")
            self.detail(f"       after  {_balances(results.after[currency])}")
        rows = [
            ("merchant", results.merchant),
            ("order", results.order_no),
            ("uploads", " ".join(results.uploads.values())),
            ("payin", results.payin.get("id", "")),
            ("verification", results.verification.get("id", "")),
            ("settlement run", results.run.get("id", "")),
            ("quote", results.quote.get("id", "")),
            ("conversion", results.conversion.get("id", "")),
            ("payout", results.payout.get("id", "")),
            ("receipt", results.receipt.get("id", "")),
            ("bundle", str(results.bundle_path)),
        ]
        for name, value in rows:
            self.detail(f"{name:<15} {value}")
        self.detail(
            f"{'log':<15} size {checkpoint['tree_size']}, checkpoint {checkpoint['id']} "
            f"root {checkpoint['root_hash']} at {checkpoint['timestamp']}"
        )
        self.say(
            "\nDone: the order was paid, verified, settled, converted, paid out and receipted."
        )


def _run_tag() -> str:
    """Unique per run: the documents' numbers and the references carry it."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(3).upper()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _csv(row: Mapping[str, str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    return buffer.getvalue().encode()


def _balances(balances: Mapping[str, str]) -> str:
    return (
        f"{balances['posted']} / {balances['pending']} / {balances['available']} "
        f"{balances['currency']}"
    )


def business_day(zone: str, now: datetime, cutoff: str) -> date:
    """The business day open at ``now`` for an institution in ``zone``: today's, or tomorrow's
    once today's cutoff has passed."""
    local = now.astimezone(ZoneInfo(zone))
    hours, minutes = (int(part) for part in cutoff.split(":"))
    ends = local.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    return local.date() if local < ends else local.date() + timedelta(days=1)
