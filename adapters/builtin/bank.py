"""A bank that pays out (credit transfers), reports camt.053 statements and deals FX.

Settings: ``base_url``, ``client_id``. Credential: ``signing_key``. Every request is signed:
``X-Client-Id``, ``X-Timestamp`` (unix seconds) and ``X-Signature``, the hex HMAC-SHA256 of
``"<timestamp>\\n<METHOD>\\n<path?query>\\n<hex SHA-256 of the body>"``.

Payout creation is NOT idempotent at this bank in general: it deduplicates only a repeated
``X-Request-Id`` (we send our reference). The manifest therefore declares ``payout_create`` not
idempotent, so the hub's client never resends it on its own; an unknown outcome is resolved by a
status sync by reference. The bank's amounts are decimal strings with the currency's exponent
(CNY 2, KRW 0), converted exactly to and from integer minor units.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import quote as urlquote
from xml.etree import ElementTree as ET

import httpx

from adapters.builtin import decimal_to_minor, minor_to_decimal, read_object, required
from adapters.capabilities import BankAdapter
from adapters.errors import (
    AdapterMisconfigured,
    IntegrityMismatch,
    MalformedResponse,
    OperationNotFound,
    Rejected,
)
from adapters.http import HubHttpClient
from adapters.interface import (
    Amount,
    Outcome,
    PayoutRequest,
    PayoutResult,
    RateQuote,
    StatementFile,
    StatementRequest,
)
from adapters.manifest import Capability, ErrorRule, ErrorTable, Manifest

if TYPE_CHECKING:
    from adapters.conformance.hook import SandboxHandle

CAMT053_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
MAX_END_TO_END_ID = 35  # ISO 20022 Max35Text

# ISO 20022 status reason codes (ExternalStatusReason1Code) and this bank's API codes.
ERRORS = ErrorTable(
    rules={
        "AC01": ErrorRule("beneficiary_account_invalid"),
        "AC04": ErrorRule("beneficiary_account_closed"),
        "AC06": ErrorRule("beneficiary_account_blocked"),
        "AM03": ErrorRule("currency_not_supported", decline=False),
        # The hub's own account at the bank is short: an operator funds it, then it may succeed.
        "AM04": ErrorRule("insufficient_funds", retryable=True, decline=False),
        "AM12": ErrorRule("amount_invalid", decline=False),
        "BE05": ErrorRule("initiating_party_unrecognised", decline=False),
        "BE06": ErrorRule("beneficiary_unknown"),
        "DUPL": ErrorRule("duplicate_reference", decline=False),
        "FF01": ErrorRule("counterparty_request_invalid", decline=False),
        "MS03": ErrorRule("counterparty_declined"),
        "RC01": ErrorRule("beneficiary_bank_invalid"),
        "NOT_FOUND": ErrorRule("counterparty_object_missing", decline=False),
    },
    default=ErrorRule("counterparty_declined"),
)

_OUTCOMES = {
    "accepted": Outcome.PENDING,
    "pending": Outcome.PENDING,
    "completed": Outcome.SUCCEEDED,
    "rejected": Outcome.FAILED,
}


def sign(key: str, timestamp: str, method: str, target: str, body: bytes) -> str:
    message = "\n".join([timestamp, method.upper(), target, hashlib.sha256(body).hexdigest()])
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def _aware(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedResponse(f"the bank's {name} is missing")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedResponse(f"the bank's {name} is not a time: {value!r}") from None
    if moment.tzinfo is None:
        raise MalformedResponse(f"the bank's {name} has no time zone: {value!r}")
    return moment


class GenericBankAdapter(BankAdapter):
    manifest = Manifest(
        name="bank",
        version="1.0.0",
        display_name="Bank (payouts, camt.053 statements, dealing rates)",
        capabilities=frozenset(
            {Capability.BANK_PAYOUTS, Capability.BANK_STATEMENTS, Capability.DEALING_RATES}
        ),
        currencies=frozenset({"CNY", "KRW"}),
        corridors=frozenset({("CN", "CN"), ("KR", "KR"), ("CN", "KR"), ("KR", "CN")}),
        auth_scheme="hmac",
        idempotent_operations=frozenset({"payout_status", "statement", "quote"}),
        errors=ERRORS,
        secret_fields=frozenset({"signing_key"}),
        config_fields=frozenset({"base_url", "client_id"}),
    )

    @classmethod
    def conformance_sandbox(cls) -> SandboxHandle:
        """The conformance kit's hook (``adapters.conformance.hook``)."""
        from adapters.conformance.builtin import bank_sandbox

        return bank_sandbox()

    def __init__(
        self,
        *,
        client: HubHttpClient,
        config: Mapping[str, str],
        secrets: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client=client, config=config, secrets=secrets)
        self.clock = clock

    # -- plumbing

    def _setting(self, name: str, source: Mapping[str, str]) -> str:
        value = source.get(name)
        if not value:
            raise AdapterMisconfigured(f"the bank adapter needs {name}")
        return value

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = self._setting("base_url", self.config).rstrip("/") + path
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        request = self.client.build_request(
            method, url, params=params, content=content, headers=all_headers
        )
        timestamp = str(int(self.clock()))
        target = request.url.raw_path.decode("ascii")
        request.headers["X-Client-Id"] = self._setting("client_id", self.config)
        request.headers["X-Timestamp"] = timestamp
        request.headers["X-Signature"] = sign(
            self._setting("signing_key", self.secrets), timestamp, method, target, content
        )
        return self.client.send(
            operation, request, idempotent=self.manifest.is_idempotent(operation)
        )

    def _read(self, response: httpx.Response, *, lookup: bool = False) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            return read_object(response)
        if status in (401, 403):
            raise AdapterMisconfigured(f"the bank refused our signature (HTTP {status})")
        if 400 <= status < 500:
            error = read_object(response).get("error")
            if not isinstance(error, dict) or not isinstance(error.get("code"), str):
                raise MalformedResponse(f"HTTP {status} without an error code")
            code: str = error["code"]
            message = f"{code} {error.get('reason') or ''}: {error.get('message') or ''}"
            if lookup and status == 404:
                raise OperationNotFound(message, provider_code=code)
            raise self.manifest.errors.rejected(code, message)
        raise MalformedResponse(f"unexpected HTTP {status}")

    def _payout(self, obj: dict[str, Any], reference: str) -> PayoutResult:
        found = required(obj, "end_to_end_id")
        if found != reference:
            raise IntegrityMismatch(f"the bank answered payout {found!r} for {reference!r}")
        currency = required(obj, "currency")
        amount = required(obj, "amount", (str, int, Decimal))
        status = obj.get("status")
        if status not in _OUTCOMES:
            raise MalformedResponse(f"unknown payout status {status!r}")
        outcome = _OUTCOMES[status]
        code = reason = None
        if outcome == Outcome.FAILED:
            provider_code = str(obj.get("reason_code") or "MS03")
            code = self.manifest.errors.lookup(provider_code).hub_code
            reason = f"{provider_code} {obj.get('reason') or ''}".strip()
        try:
            money = Amount(decimal_to_minor(str(amount), currency), currency)
        except ValueError as exc:
            raise MalformedResponse(f"the bank's amount cannot be read: {exc}") from None
        return PayoutResult(
            reference=reference,
            provider_id=required(obj, "id"),
            amount=money,
            outcome=outcome,
            failure_code=code,
            failure_reason=reason,
        )

    # -- payouts

    def create_payout(self, request: PayoutRequest) -> PayoutResult:
        """Send one credit transfer. Never resent by the client: an ``AdapterTimeout`` or
        ``UnknownOutcome`` is resolved with ``get_payout(reference=...)``."""
        if not 1 <= len(request.reference) <= MAX_END_TO_END_ID:
            raise Rejected(
                f"the bank takes references of 1 to {MAX_END_TO_END_ID} characters",
                hub_code="counterparty_request_invalid",
            )
        currency = request.amount.currency
        beneficiary = request.beneficiary
        body = {
            "end_to_end_id": request.reference,
            "amount": format(minor_to_decimal(request.amount.minor, currency), "f"),
            "currency": currency,
            "creditor": {
                "name": beneficiary.account_name,
                "account_number": beneficiary.account_number,
                "bank_code": beneficiary.bank_code,
                "country": beneficiary.country,
            },
            "remittance_information": request.remittance_info,
        }
        response = self._call(
            "payout_create",
            "POST",
            "/payouts",
            body=body,
            headers={"X-Request-Id": request.reference},
        )
        return self._payout(self._read(response), request.reference)

    def get_payout(self, *, reference: str, provider_id: str | None) -> PayoutResult:
        """Status sync. ``OperationNotFound`` when the bank has no such payout (a create that
        ended unknown never arrived, or has not yet); ``IntegrityMismatch`` when it holds more
        than one for our reference."""
        if provider_id:
            path = "/payouts/" + urlquote(provider_id, safe="")
            obj = self._read(self._call("payout_status", "GET", path), lookup=True)
            return self._payout(obj, reference)
        listing = self._read(
            self._call("payout_status", "GET", "/payouts", params={"reference": reference})
        )
        data = listing.get("data")
        if not isinstance(data, list) or not all(isinstance(o, dict) for o in data):
            raise MalformedResponse("a payout list without data")
        matches = [o for o in data if o.get("end_to_end_id") == reference]
        if not matches:
            raise OperationNotFound(f"the bank has no payout for reference {reference}")
        if len(matches) > 1:
            ids = ", ".join(str(o.get("id")) for o in matches)
            raise IntegrityMismatch(f"the bank made several payouts for {reference}: {ids}")
        return self._payout(matches[0], reference)

    # -- statements

    def fetch_statement(self, request: StatementRequest) -> StatementFile:
        """The camt.053 document exactly as the bank sent it, once it is known to be one for the
        account asked about."""
        params = {
            "account": request.account,
            "from": request.date_from.isoformat(),
            "to": request.date_to.isoformat(),
        }
        response = self._call("statement", "GET", "/statements", params=params)
        if response.status_code != 200:
            self._read(response)  # raises what the error means
            raise MalformedResponse(f"unexpected HTTP {response.status_code}")
        _check_camt053(response.content, request.account)
        media_type = response.headers.get("Content-Type", "application/xml").split(";")[0]
        return StatementFile(media_type=media_type.strip(), content=response.content)

    # -- dealing rates

    def dealing_quote(self, *, base: str, quote: str) -> RateQuote:
        obj = self._read(
            self._call("quote", "GET", "/fx/quotes", params={"base": base, "quote": quote})
        )
        if (obj.get("base"), obj.get("quote")) != (base, quote):
            raise IntegrityMismatch(
                f"asked {base}/{quote}, the bank quoted {obj.get('base')}/{obj.get('quote')}"
            )
        raw = required(obj, "rate", (str, Decimal))
        try:
            rate = Decimal(raw)
        except InvalidOperation:
            raise MalformedResponse(f"the bank's rate is not a decimal: {raw!r}") from None
        if not rate.is_finite() or rate <= 0:
            raise MalformedResponse(f"the bank's rate is not a positive number: {raw!r}")
        valid_until = obj.get("valid_until")
        return RateQuote(
            base=base,
            quote=quote,
            rate=rate,
            as_of=_aware(obj.get("as_of"), "as_of"),
            source=self.manifest.name,
            valid_until=_aware(valid_until, "valid_until") if valid_until is not None else None,
        )


def _check_camt053(content: bytes, account: str) -> None:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedResponse("the statement is not UTF-8") from None
    # No DTDs: refusing them rules out entity expansion and external entities before parsing.
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise MalformedResponse("the statement carries a DTD")
    try:
        root = ET.fromstring(content)  # noqa: S314 (DTDs refused above)
    except ET.ParseError as exc:
        raise MalformedResponse(f"the statement is not XML: {exc}") from None
    ns = {"c": CAMT053_NS}
    if root.tag != f"{{{CAMT053_NS}}}Document":
        raise MalformedResponse(f"not a camt.053.001.08 document: {root.tag}")
    accounts = {
        (e.text or "").strip()
        for e in root.iterfind("c:BkToCstmrStmt/c:Stmt/c:Acct/c:Id/*/c:Id", ns)
    }
    accounts |= {
        (e.text or "").strip()
        for e in root.iterfind("c:BkToCstmrStmt/c:Stmt/c:Acct/c:Id/c:IBAN", ns)
    }
    if accounts != {account}:
        raise IntegrityMismatch(f"asked for {account}, the statement is of {sorted(accounts)}")
