"""Example Bank's Open API v2 as the hub's bank capabilities (KRW payouts, camt.053 statements,
dealing rates); the running example of docs/adapters.md."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import quote as urlquote

import httpx

from adapters import errors
from adapters.capabilities import BankAdapter
from adapters.interface import Amount, Outcome, PayoutResult, RateQuote, StatementFile
from adapters.manifest import Capability, ErrorRule, ErrorTable, Manifest

if TYPE_CHECKING:
    from adapters.conformance import SandboxHandle
    from adapters.interface import PayoutRequest, StatementRequest

ERRORS = ErrorTable(
    rules={
        "E101": ErrorRule("beneficiary_unknown"),
        "E102": ErrorRule("beneficiary_account_closed"),
        "E201": ErrorRule("insufficient_funds", retryable=True, decline=False),
        "E300": ErrorRule("counterparty_request_invalid", decline=False),
        "E301": ErrorRule("currency_not_supported", decline=False),
        "E404": ErrorRule("counterparty_object_missing", decline=False),
    },
    default=ErrorRule("counterparty_declined"),
)
CAPABILITIES = {Capability.BANK_PAYOUTS, Capability.BANK_STATEMENTS, Capability.DEALING_RATES}
STATES = {"RECEIVED": Outcome.PENDING, "SETTLED": Outcome.SUCCEEDED, "RETURNED": Outcome.FAILED}


class ExampleBankAdapter(BankAdapter):
    manifest = Manifest(
        name="example_bank",
        version="0.1.0",
        display_name="Example Bank (KRW payouts, camt.053 statements, dealing rates)",
        capabilities=frozenset(CAPABILITIES),
        currencies=frozenset({"KRW"}),
        corridors=frozenset({("KR", "KR"), ("CN", "KR")}),
        auth_scheme="bearer",
        # Not "transfer_create": every POST is a new transfer, so the hub must never resend it.
        idempotent_operations=frozenset({"transfer_status", "statement", "rate"}),
        errors=ERRORS,
        secret_fields=frozenset({"api_key"}),
        config_fields=frozenset({"base_url"}),
    )

    @classmethod
    def conformance_sandbox(cls) -> SandboxHandle:
        from hub_adapter_example.sandbox import sandbox_handle

        return sandbox_handle()

    def _send(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        base, key = self.config.get("base_url"), self.secrets.get("api_key")
        if not base or not key:
            raise errors.AdapterMisconfigured("example_bank needs base_url and api_key")
        auth = {"Authorization": f"Bearer {key}"}
        request = self.client.build_request(method, base.rstrip("/") + path, headers=auth, **kwargs)
        idempotent = self.manifest.is_idempotent(operation)
        return self.client.send(operation, request, idempotent=idempotent)

    def _read(self, response: httpx.Response, *, lookup: bool = False) -> dict[str, Any]:
        status = response.status_code
        try:  # money is never read through a float
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise errors.MalformedResponse(f"HTTP {status} without JSON") from None
        if not isinstance(body, dict):
            raise errors.MalformedResponse("the answer is not a JSON object")
        if status < 300:
            return body
        if status in (401, 403):
            raise errors.AdapterMisconfigured(f"Example Bank refused the api_key (HTTP {status})")
        code, message = str(body.get("error_code") or f"HTTP{status}"), str(body.get("message"))
        if lookup and status == 404:
            raise errors.OperationNotFound(message, provider_code=code)
        raise self.manifest.errors.rejected(code, message)

    def _payout(self, obj: dict[str, Any], reference: str) -> PayoutResult:
        if obj.get("client_ref") != reference:
            raise errors.IntegrityMismatch(f"asked {reference}, got {obj.get('client_ref')!r}")
        state, minor = obj.get("state"), obj.get("amount_minor")
        if state not in STATES or type(minor) is not int or "transfer_id" not in obj:
            raise errors.MalformedResponse(f"unreadable transfer: {obj}")
        try:
            amount = Amount(minor, str(obj.get("currency")))
        except ValueError as exc:
            raise errors.MalformedResponse(str(exc)) from None
        failed = STATES[state] == Outcome.FAILED
        reason = str(obj.get("return_code") or "unknown") if failed else None
        code = self.manifest.errors.lookup(reason).hub_code if reason else None
        return PayoutResult(reference, str(obj["transfer_id"]), amount, STATES[state], code, reason)

    def create_payout(self, request: PayoutRequest) -> PayoutResult:
        to = request.beneficiary
        body = {
            "client_ref": request.reference,
            "amount_minor": request.amount.minor,
            "currency": request.amount.currency,
            "to": {"account": to.account_number, "holder": to.account_name, "bank": to.bank_code},
            "memo": request.remittance_info,
        }
        response = self._send("transfer_create", "POST", "/v2/transfers", json=body)
        return self._payout(self._read(response), request.reference)

    def get_payout(self, *, reference: str, provider_id: str | None) -> PayoutResult:
        if provider_id:
            path = "/v2/transfers/" + urlquote(provider_id, safe="")
            obj = self._read(self._send("transfer_status", "GET", path), lookup=True)
            return self._payout(obj, reference)
        query = {"client_ref": reference}
        items = self._read(self._send("transfer_status", "GET", "/v2/transfers", params=query))
        listing = items.get("items")
        if not isinstance(listing, list) or not all(isinstance(i, dict) for i in listing):
            raise errors.MalformedResponse("a transfer list without items")
        found = [i for i in listing if i.get("client_ref") == reference]
        if len(found) != 1:  # none: it never arrived (or not yet); several: the bank erred
            error = errors.IntegrityMismatch if found else errors.OperationNotFound
            raise error(f"Example Bank holds {len(found)} transfers for {reference}")
        return self._payout(found[0], reference)

    def fetch_statement(self, request: StatementRequest) -> StatementFile:
        path = f"/v2/accounts/{urlquote(request.account, safe='')}/camt053"
        dates = {"from": request.date_from.isoformat(), "to": request.date_to.isoformat()}
        response = self._send("statement", "GET", path, params=dates)
        if response.status_code != 200 or "xml" not in response.headers.get("Content-Type", ""):
            self._read(response)  # raises the error the answer means
            raise errors.MalformedResponse("the statement is not XML")
        return StatementFile("application/xml", response.content)

    def dealing_quote(self, *, base: str, quote: str) -> RateQuote:
        obj = self._read(self._send("rate", "GET", f"/v2/fx/{base}-{quote}"))
        if obj.get("pair") != f"{base}-{quote}":
            raise errors.IntegrityMismatch(f"asked {base}-{quote}, quoted {obj.get('pair')}")
        try:
            rate = Decimal(str(obj["mid"]))
            as_of, until = (datetime.fromisoformat(obj[k]) for k in ("quoted_at", "expires_at"))
            if not rate.is_finite() or rate <= 0 or None in (as_of.tzinfo, until.tzinfo):
                raise ValueError(obj)
        except (KeyError, TypeError, ValueError, InvalidOperation):
            raise errors.MalformedResponse(f"unreadable rate: {obj}") from None
        return RateQuote(base, quote, rate, as_of, self.manifest.name, until)
