"""A sandbox bank: payouts, camt.053 statements and dealing quotes on a real loopback HTTP server.

Every request is signed: ``X-Client-Id``, ``X-Timestamp`` (unix seconds, within 300 s of the wall
clock) and ``X-Signature``, the hex HMAC-SHA256 with the client's signing key of
``"<timestamp>\\n<METHOD>\\n<path?query as sent>\\n<hex SHA-256 of the body>"``; else 401.

=====================================  ===================  ==================================
route                                  operation (faults)   what it does
=====================================  ===================  ==================================
``POST /payouts``                      ``payout_create``    a credit transfer from the client's
                                                            account in that currency; 201
                                                            ``accepted``
``GET /payouts/{id}``                  ``payout_status``
``GET /payouts?reference=``            ``payout_status``    ``{"data": [...]}`` by EndToEndId
``GET /statements?account=&from=&to=`` ``statement``        camt.053.001.08 XML, booked entries
``GET /fx/quotes?base=&quote=``        ``quote``            a dealing rate and its expiry
=====================================  ===================  ==================================

Payouts are not idempotent: every POST is a new payout, unless its ``X-Request-Id`` repeats one
already seen, in which case the original payout is answered (200, ``X-Duplicate-Request: true``);
the same id with another body is a 409 ``DUPL``. Amounts are decimal strings with the currency's
exponent (CNY 2, KRW 0). A payout is ``accepted``, then, ``settle_delay_seconds`` later on the
sandbox's clock, ``completed`` (debited and booked) or ``rejected`` with an ISO 20022 reason code:
AC04 (the creditor's account is closed), BE06 (the creditor is unknown), AM04 (the debtor
account's balance does not cover it). Settlement happens in order of due time, evaluated whenever
the bank is asked anything, so it is deterministic.

Control API, besides the common one (see ``base``):

- ``POST /_sandbox/config``: ``settle_delay_seconds``, ``quote_ttl_seconds``, ``rates``
  (``{"CNY/KRW": "191.25"}``)
- ``POST /_sandbox/creditors`` ``{"account_number": "...", "status": "closed|unknown|ok"}``
- ``POST /_sandbox/accounts`` ``{"currency": "CNY", "opening_balance": "1000.00"}``
- ``POST /_sandbox/payouts/{id}/complete`` and ``.../reject`` ``{"reason_code": "AC04"}``: settle
  one now
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.etree import ElementTree as ET

from adapters.sandbox.base import (
    CONTROL_PREFIX,
    ApiError,
    Response,
    Route,
    SandboxRequest,
    SandboxServer,
    json_response,
    utc_iso,
)

CAMT053_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
EXPONENTS = {"CNY": 2, "KRW": 0}
DEFAULT_CLIENT_ID = "hub-sandbox"
DEFAULT_SIGNING_KEY = "bank-sandbox-signing-key"
DEFAULT_ACCOUNTS = {"CNY": "6222020200000000001", "KRW": "1002000000000002"}
DEFAULT_OPENING_BALANCE = {"CNY": 10_000_000_000, "KRW": 1_000_000_000_000}  # minor units
DEFAULT_RATES = {"CNY/KRW": "191.2500", "KRW/CNY": "0.005227"}
SIGNATURE_TOLERANCE = 300

REASONS = {
    "AC01": "IncorrectAccountNumber",
    "AC04": "ClosedAccountNumber",
    "AC06": "BlockedAccount",
    "AM03": "NotAllowedCurrency",
    "AM04": "InsufficientFunds",
    "AM12": "InvalidAmount",
    "BE05": "UnrecognisedInitiatingParty",
    "BE06": "UnknownEndCustomer",
    "DUPL": "DuplicatePayment",
    "FF01": "InvalidFileFormat",
    "MS03": "NotSpecifiedReasonAgentGenerated",
    "RC01": "BankIdentifierIncorrect",
}
CREDITOR_REJECTIONS = {"closed": "AC04", "unknown": "BE06"}


def _error(status: int, code: str, message: str = "") -> ApiError:
    return ApiError(
        status, {"error": {"code": code, "reason": REASONS.get(code, code), "message": message}}
    )


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-EXPONENTS[currency])


def to_minor(text: Any, currency: str, *, allow_zero: bool = False) -> int:
    if not isinstance(text, str):
        raise _error(400, "AM12", "amount must be a decimal string")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _error(400, "AM12", "amount is not a decimal") from None
    exponent = EXPONENTS[currency]
    scaled = value.scaleb(exponent)
    too_small = value < 0 if allow_zero else value <= 0
    if not value.is_finite() or too_small or scaled != scaled.to_integral_value():
        raise _error(400, "AM12", f"{currency} amounts are positive with {exponent} decimals")
    return int(scaled)


def _money(minor: int, currency: str) -> str:
    return format(to_decimal(minor, currency), "f")


@dataclass
class Payout:
    id: str
    request_id: str | None
    end_to_end_id: str
    amount: int  # minor units
    currency: str
    debtor_account: str
    creditor: dict[str, str]
    remittance_information: str
    fingerprint: str
    created_at: float
    settle_at: float
    status: str = "accepted"
    reason_code: str | None = None
    settled_at: float | None = None

    @property
    def booking_date(self) -> date | None:
        if self.status != "completed" or self.settled_at is None:
            return None
        return datetime.fromtimestamp(self.settled_at, UTC).date()

    def view(self) -> dict[str, Any]:
        booked = self.booking_date
        return {
            "id": self.id,
            "object": "payout",
            "end_to_end_id": self.end_to_end_id,
            "amount": _money(self.amount, self.currency),
            "currency": self.currency,
            "status": self.status,
            "reason_code": self.reason_code,
            "reason": REASONS.get(self.reason_code) if self.reason_code else None,
            "debtor_account": self.debtor_account,
            "creditor": self.creditor,
            "remittance_information": self.remittance_information,
            "created_at": utc_iso(self.created_at),
            "settled_at": utc_iso(self.settled_at) if self.settled_at else None,
            "booking_date": booked.isoformat() if booked else None,
        }


@dataclass
class Account:
    number: str
    currency: str
    opening_balance: int  # minor units, before any payout
    booked: list[str] = field(default_factory=list)  # payout ids, in booking order


class BankSandbox(SandboxServer):
    name = "bank"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_seconds: float = 30.0,
        client_id: str = DEFAULT_CLIENT_ID,
        signing_key: str = DEFAULT_SIGNING_KEY,
        accounts: dict[str, str] | None = None,
        settle_delay_seconds: float = 5.0,
    ) -> None:
        self.client_id = client_id
        self.signing_key = signing_key
        self._account_numbers = dict(accounts or DEFAULT_ACCOUNTS)
        self._initial_delay = settle_delay_seconds
        self.settle_delay_seconds = settle_delay_seconds
        self.quote_ttl_seconds = 60.0
        self.rates: dict[str, str] = dict(DEFAULT_RATES)
        self.accounts: dict[str, Account] = {}
        self.payouts: dict[str, Payout] = {}
        self.creditors: dict[str, str] = {}  # account number -> "closed" | "unknown"
        self._request_ids: dict[str, str] = {}
        self._counter = 0
        super().__init__(host=host, port=port, timeout_seconds=timeout_seconds)
        self.reset_state()

    # -- configuration and state

    def reset_state(self) -> None:
        self.settle_delay_seconds = self._initial_delay
        self.quote_ttl_seconds = 60.0
        self.rates = dict(DEFAULT_RATES)
        self.accounts = {
            number: Account(number, currency, DEFAULT_OPENING_BALANCE[currency])
            for currency, number in self._account_numbers.items()
        }
        self.payouts.clear()
        self.creditors.clear()
        self._request_ids.clear()

    def configure(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if key == "settle_delay_seconds" and number and value >= 0:
                self.settle_delay_seconds = float(value)
            elif key == "quote_ttl_seconds" and number and value > 0:
                self.quote_ttl_seconds = float(value)
            elif key == "rates" and isinstance(value, dict):
                for pair, rate in value.items():
                    try:
                        ok = isinstance(rate, str) and Decimal(rate) > 0
                    except InvalidOperation:
                        ok = False
                    if not ok:
                        raise ApiError(400, {"error": {"code": "parameter_invalid", "param": pair}})
                self.rates.update(value)
            else:
                raise ApiError(400, {"error": {"code": "parameter_invalid", "param": key}})

    def config_view(self) -> dict[str, Any]:
        return {
            "settle_delay_seconds": self.settle_delay_seconds,
            "quote_ttl_seconds": self.quote_ttl_seconds,
            "rates": self.rates,
            "client_id": self.client_id,
            "accounts": self._account_numbers,
        }

    def state_view(self) -> dict[str, Any]:
        self._settle_due()
        return {
            "payouts": [p.view() for p in self.payouts.values()],
            "accounts": [
                {
                    "account": a.number,
                    "currency": a.currency,
                    "balance": _money(self._balance(a), a.currency),
                }
                for a in self.accounts.values()
            ],
            "creditors": self.creditors,
        }

    def account_for(self, currency: str) -> str:
        return self._account_numbers[currency]

    # -- settlement (lazy, in due order, on the sandbox clock)

    def _balance(self, account: Account, *, before: date | None = None) -> int:
        spent = 0
        for payout_id in account.booked:
            payout = self.payouts[payout_id]
            booked = payout.booking_date
            if before is None or (booked is not None and booked < before):
                spent += payout.amount
        return account.opening_balance - spent

    def _settle_due(self) -> None:
        now = self.now()
        due = sorted(
            (p for p in self.payouts.values() if p.status == "accepted" and p.settle_at <= now),
            key=lambda p: (p.settle_at, p.created_at, p.id),
        )
        for payout in due:
            self._settle(payout, at=payout.settle_at)

    def _settle(self, payout: Payout, *, at: float, reason: str | None = None) -> None:
        account = self.accounts[payout.debtor_account]
        creditor_state = self.creditors.get(payout.creditor.get("account_number", ""))
        if reason is None and creditor_state in CREDITOR_REJECTIONS:
            reason = CREDITOR_REJECTIONS[creditor_state]
        if reason is None and self._balance(account) < payout.amount:
            reason = "AM04"
        payout.settled_at = at
        if reason is not None:
            payout.status, payout.reason_code = "rejected", reason
            return
        payout.status = "completed"
        account.booked.append(payout.id)

    # -- routes

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/payouts", "payout_create", self._create_payout),
            Route.of("GET", "/payouts", "payout_status", self._list_payouts),
            Route.of("GET", r"/payouts/(?P<id>[^/]+)", "payout_status", self._get_payout),
            Route.of("GET", "/statements", "statement", self._statement),
            Route.of("GET", "/fx/quotes", "quote", self._quote),
        ]

    def control_routes(self) -> list[Route]:
        p = CONTROL_PREFIX
        return [
            Route.of("POST", p + "/creditors", "creditors", self._ctl_creditor),
            Route.of("POST", p + "/accounts", "accounts", self._ctl_account),
            Route.of(
                "POST", p + r"/payouts/(?P<id>[^/]+)/complete", "complete", self._ctl_complete
            ),
            Route.of("POST", p + r"/payouts/(?P<id>[^/]+)/reject", "reject", self._ctl_reject),
        ]

    def _authenticate(self, request: SandboxRequest) -> None:
        client = request.header("x-client-id")
        timestamp = request.header("x-timestamp") or ""
        signature = request.header("x-signature") or ""
        if client != self.client_id or not timestamp.isdigit():
            raise _error(401, "AUTH", "unknown client or missing timestamp")
        # Signatures are checked against the wall clock, not the (movable) business clock.
        if abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE:
            raise _error(401, "AUTH", "timestamp outside tolerance")
        expected = sign(self.signing_key, timestamp, request.method, request.target, request.body)
        if not hmac.compare_digest(expected, signature):
            raise _error(401, "AUTH", "bad signature")
        # Whatever the client asks next sees every payout settled that is due by now.
        self._settle_due()

    def _create_payout(self, request: SandboxRequest) -> Response:
        self._authenticate(request)
        try:
            data = json.loads(request.body)
        except ValueError:
            raise _error(400, "FF01", "the body is not JSON") from None
        if not isinstance(data, dict):
            raise _error(400, "FF01", "the body is not a JSON object")
        fingerprint = hashlib.sha256(request.body).hexdigest()
        request_id = request.header("x-request-id")
        if request_id and request_id in self._request_ids:
            original = self.payouts[self._request_ids[request_id]]
            if original.fingerprint != fingerprint:
                raise _error(409, "DUPL", "this X-Request-Id was used for another payout")
            request.effect = f"duplicate of {original.id}"
            return json_response(200, original.view(), {"X-Duplicate-Request": "true"})
        currency = data.get("currency")
        if currency not in EXPONENTS or currency not in self._account_numbers:
            raise _error(400, "AM03", "payouts are made in CNY or KRW")
        amount = to_minor(data.get("amount"), currency)
        end_to_end_id = data.get("end_to_end_id")
        if not isinstance(end_to_end_id, str) or not 1 <= len(end_to_end_id) <= 35:
            raise _error(400, "FF01", "end_to_end_id is 1 to 35 characters")
        creditor = data.get("creditor")
        if not isinstance(creditor, dict):
            raise _error(400, "FF01", "creditor is required")
        creditor = {str(k): str(v) for k, v in creditor.items()}
        if not creditor.get("account_number", "").strip():
            raise _error(400, "AC01", "creditor.account_number is required")
        if not creditor.get("bank_code", "").strip():
            raise _error(400, "RC01", "creditor.bank_code is required")
        now = self.now()
        self._counter += 1
        payout = Payout(
            id=f"PO{datetime.fromtimestamp(now, UTC):%Y%m%d}{self._counter:06d}"
            + secrets.token_hex(2).upper(),
            request_id=request_id,
            end_to_end_id=end_to_end_id,
            amount=amount,
            currency=currency,
            debtor_account=self.account_for(currency),
            creditor=creditor,
            remittance_information=str(data.get("remittance_information") or "")[:140],
            fingerprint=fingerprint,
            created_at=now,
            settle_at=now + self.settle_delay_seconds,
        )
        self.payouts[payout.id] = payout
        if request_id:
            self._request_ids[request_id] = payout.id
        request.effect = f"created {payout.id}"
        return json_response(201, payout.view())

    def _list_payouts(self, request: SandboxRequest) -> Response:
        self._authenticate(request)
        reference = request.query.get("reference")
        found = [
            p.view()
            for p in self.payouts.values()
            if reference is None or p.end_to_end_id == reference
        ]
        return json_response(200, {"data": found})

    def _get_payout(self, request: SandboxRequest) -> Response:
        self._authenticate(request)
        payout = self.payouts.get(request.params["id"])
        if payout is None:
            raise _error(404, "NOT_FOUND", "no such payout")
        return json_response(200, payout.view())

    def _statement(self, request: SandboxRequest) -> Response:
        self._authenticate(request)
        account = self.accounts.get(request.query.get("account", ""))
        if account is None:
            raise _error(404, "NOT_FOUND", "no such account")
        try:
            start = date.fromisoformat(request.query.get("from", ""))
            end = date.fromisoformat(request.query.get("to", ""))
        except ValueError:
            raise _error(400, "FF01", "from and to are dates, YYYY-MM-DD") from None
        if end < start:
            raise _error(400, "FF01", "to is before from")
        body = camt053(self, account, start, end)
        return Response(200, body, "application/xml")

    def _quote(self, request: SandboxRequest) -> Response:
        self._authenticate(request)
        base, quote = request.query.get("base", ""), request.query.get("quote", "")
        rate = self.rates.get(f"{base}/{quote}")
        if rate is None:
            raise _error(400, "AM03", f"no dealing rate for {base}/{quote}")
        now = self.now()
        return json_response(
            200,
            {
                "quote_id": "Q" + secrets.token_hex(8).upper(),
                "base": base,
                "quote": quote,
                "rate": rate,
                "as_of": utc_iso(now),
                "valid_until": utc_iso(now + self.quote_ttl_seconds),
            },
        )

    # -- control

    def _ctl_creditor(self, request: SandboxRequest) -> Response:
        data = request.json()
        number, status = data.get("account_number"), data.get("status")
        if not isinstance(number, str) or status not in ("closed", "unknown", "ok"):
            raise ApiError(400, {"error": {"code": "parameter_invalid"}})
        if status == "ok":
            self.creditors.pop(number, None)
        else:
            self.creditors[number] = status
        return json_response(200, {"creditors": self.creditors})

    def _ctl_account(self, request: SandboxRequest) -> Response:
        data = request.json()
        currency = data.get("currency")
        if currency not in EXPONENTS or currency not in self._account_numbers:
            raise ApiError(400, {"error": {"code": "parameter_invalid", "param": "currency"}})
        account = self.accounts[self.account_for(currency)]
        account.opening_balance = to_minor(data.get("opening_balance"), currency, allow_zero=True)
        return json_response(
            200,
            {
                "account": account.number,
                "opening_balance": _money(account.opening_balance, currency),
            },
        )

    def _ctl_settle_one(self, request: SandboxRequest, reason: str | None) -> Response:
        self._settle_due()
        payout = self.payouts.get(request.params["id"])
        if payout is None:
            raise ApiError(404, {"error": {"code": "NOT_FOUND"}})
        if payout.status != "accepted":
            raise ApiError(409, {"error": {"code": "already_settled", "status": payout.status}})
        self._settle(payout, at=self.now(), reason=reason)
        return json_response(200, payout.view())

    def _ctl_complete(self, request: SandboxRequest) -> Response:
        return self._ctl_settle_one(request, None)

    def _ctl_reject(self, request: SandboxRequest) -> Response:
        reason = request.json().get("reason_code") or "MS03"
        if not isinstance(reason, str) or not 1 <= len(reason) <= 4:
            raise ApiError(400, {"error": {"code": "parameter_invalid", "param": "reason_code"}})
        return self._ctl_settle_one(request, reason)


def sign(key: str, timestamp: str, method: str, target: str, body: bytes) -> str:
    """The request signature both sides compute (see the module docstring)."""
    message = "\n".join([timestamp, method.upper(), target, hashlib.sha256(body).hexdigest()])
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text
    return element


def _path(parent: ET.Element, tags: str, text: str) -> ET.Element:
    element = parent
    for tag in tags.split("/"):
        element = _sub(element, tag)
    element.text = text
    return element


def _balance_element(stmt: ET.Element, code: str, minor: int, currency: str, on: date) -> None:
    bal = _sub(stmt, "Bal")
    _path(bal, "Tp/CdOrPrtry/Cd", code)
    _sub(bal, "Amt", _money(abs(minor), currency), Ccy=currency)
    _sub(bal, "CdtDbtInd", "CRDT" if minor >= 0 else "DBIT")
    _path(bal, "Dt/Dt", on.isoformat())


def camt053(bank: BankSandbox, account: Account, start: date, end: date) -> bytes:
    """A camt.053.001.08 statement of the booked entries of ``account`` from ``start`` to
    ``end`` (booking dates, inclusive): one debit entry per completed payout."""
    currency = account.currency
    entries = [
        bank.payouts[pid]
        for pid in account.booked
        if (booked := bank.payouts[pid].booking_date) is not None and start <= booked <= end
    ]
    opening = bank._balance(account, before=start)
    closing = opening - sum(p.amount for p in entries)
    now = utc_iso(bank.now())
    # Names are written unqualified under a default namespace declared on the root.
    root = ET.Element("Document", {"xmlns": CAMT053_NS})
    statement = _sub(root, "BkToCstmrStmt")
    header = _sub(statement, "GrpHdr")
    _sub(header, "MsgId", "CAMT053" + secrets.token_hex(6).upper())
    _sub(header, "CreDtTm", now)
    stmt = _sub(statement, "Stmt")
    _sub(stmt, "Id", f"{account.number}-{start:%Y%m%d}-{end:%Y%m%d}")
    _sub(stmt, "CreDtTm", now)
    period = _sub(stmt, "FrToDt")
    _sub(period, "FrDtTm", f"{start.isoformat()}T00:00:00Z")
    _sub(period, "ToDtTm", f"{end.isoformat()}T23:59:59Z")
    acct = _sub(stmt, "Acct")
    _path(acct, "Id/Othr/Id", account.number)
    _sub(acct, "Ccy", currency)
    _balance_element(stmt, "OPBD", opening, currency, start)
    _balance_element(stmt, "CLBD", closing, currency, end)
    summary = _sub(stmt, "TxsSummry")
    total = _sub(summary, "TtlNtries")
    _sub(total, "NbOfNtries", str(len(entries)))
    _sub(total, "Sum", _money(sum(p.amount for p in entries), currency))
    net = _sub(total, "TtlNetNtry")
    _sub(net, "Amt", _money(sum(p.amount for p in entries), currency))
    _sub(net, "CdtDbtInd", "DBIT")
    debits = _sub(summary, "TtlDbtNtries")
    _sub(debits, "NbOfNtries", str(len(entries)))
    _sub(debits, "Sum", _money(sum(p.amount for p in entries), currency))
    for payout in entries:
        booked = payout.booking_date
        assert booked is not None
        entry = _sub(stmt, "Ntry")
        _sub(entry, "NtryRef", payout.id)
        _sub(entry, "Amt", _money(payout.amount, currency), Ccy=currency)
        _sub(entry, "CdtDbtInd", "DBIT")
        _path(entry, "Sts/Cd", "BOOK")
        _path(entry, "BookgDt/Dt", booked.isoformat())
        _path(entry, "ValDt/Dt", booked.isoformat())
        _sub(entry, "AcctSvcrRef", payout.id)
        domain = _sub(_sub(entry, "BkTxCd"), "Domn")
        _sub(domain, "Cd", "PMNT")
        family = _sub(domain, "Fmly")
        _sub(family, "Cd", "ICDT")
        _sub(family, "SubFmlyCd", "XBCT")
        tx = _sub(_sub(entry, "NtryDtls"), "TxDtls")
        refs = _sub(tx, "Refs")
        _sub(refs, "AcctSvcrRef", payout.id)
        if payout.request_id:
            _sub(refs, "InstrId", payout.request_id[:35])
        _sub(refs, "EndToEndId", payout.end_to_end_id)
        _sub(tx, "Amt", _money(payout.amount, currency), Ccy=currency)
        _sub(tx, "CdtDbtInd", "DBIT")
        parties = _sub(tx, "RltdPties")
        _path(parties, "Cdtr/Pty/Nm", payout.creditor.get("name", "")[:140])
        _path(parties, "CdtrAcct/Id/Othr/Id", payout.creditor["account_number"])
        _path(tx, "RltdAgts/CdtrAgt/FinInstnId/Othr/Id", payout.creditor["bank_code"])
        if payout.remittance_information:
            _path(tx, "RmtInf/Ustrd", payout.remittance_information)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
