"""Example Bank's sandbox: its Open API v2 on a loopback HTTP server, built on the hub's sandbox
base (so it has the control API and the fault queue of ``adapters.sandbox.base``), and the
conformance hook that starts it.

=========================================  ===================  ===============================
route                                      operation (faults)   what it does
=========================================  ===================  ===============================
``POST /v2/transfers``                     ``transfer_create``  a new transfer, ``RECEIVED``
``GET /v2/transfers/{id}``                 ``transfer_status``
``GET /v2/transfers?client_ref=``          ``transfer_status``  ``{"items": [...]}``
``GET /v2/accounts/{account}/camt053``     ``statement``        settled transfers, camt.053
``GET /v2/fx/{base}-{quote}``              ``rate``             a mid rate valid for 60 s
=========================================  ===================  ===============================

Control: ``POST /_sandbox/transfers/{id}/settle`` settles a transfer now (``SETTLED``), or with
``{"return_code": "E102"}`` returns it (``RETURNED``).
"""

from __future__ import annotations

import argparse
import secrets
import time
from datetime import UTC, date, datetime
from typing import Any
from xml.etree import ElementTree as ET

from adapters.conformance import SandboxHandle
from adapters.conformance.control import SandboxControl
from adapters.interface import BankAccount
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

API_KEY = "example-bank-sandbox-key"  # public on purpose: the sandbox holds no money
ACCOUNT = "110-200-300400"  # the hub's KRW account at Example Bank
RATES = {"KRW-CNY": "0.005230", "CNY-KRW": "191.20"}
CAMT053_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


def _error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, {"error_code": code, "message": message})


class ExampleBankSandbox(SandboxServer):
    name = "example_bank"

    def __init__(self, **kwargs: Any) -> None:
        self.transfers: dict[str, dict[str, Any]] = {}
        super().__init__(**kwargs)

    def reset_state(self) -> None:
        self.transfers.clear()

    def state_view(self) -> dict[str, Any]:
        return {"transfers": list(self.transfers.values())}

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/v2/transfers", "transfer_create", self._create),
            Route.of("GET", "/v2/transfers", "transfer_status", self._list),
            Route.of("GET", r"/v2/transfers/(?P<id>[^/]+)", "transfer_status", self._get),
            Route.of("GET", r"/v2/accounts/(?P<acct>[^/]+)/camt053", "statement", self._camt),
            Route.of("GET", r"/v2/fx/(?P<pair>[A-Z]{3}-[A-Z]{3})", "rate", self._rate),
        ]

    def control_routes(self) -> list[Route]:
        path = CONTROL_PREFIX + r"/transfers/(?P<id>[^/]+)/settle"
        return [Route.of("POST", path, "settle", self._settle)]

    def _auth(self, request: SandboxRequest) -> None:
        if request.header("authorization") != f"Bearer {API_KEY}":
            raise _error(401, "E401", "unknown api key")

    def _create(self, request: SandboxRequest) -> Response:
        self._auth(request)
        data = request.json()
        if data.get("currency") != "KRW":
            raise _error(400, "E301", "Example Bank pays out in KRW")
        minor, ref, to = data.get("amount_minor"), data.get("client_ref"), data.get("to")
        if not isinstance(minor, int) or minor <= 0 or not isinstance(ref, str) or not ref:
            raise _error(400, "E300", "amount_minor and client_ref are required")
        if not isinstance(to, dict) or not to.get("account"):
            raise _error(400, "E101", "to.account is required")
        transfer: dict[str, Any] = {
            "transfer_id": "T" + secrets.token_hex(6).upper(),
            "client_ref": ref,
            "amount_minor": minor,
            "currency": "KRW",
            "to": to,
            "state": "RECEIVED",
            "return_code": None,
            "settled_on": None,
        }
        self.transfers[transfer["transfer_id"]] = transfer
        request.effect = f"created {transfer['transfer_id']}"
        return json_response(201, transfer)

    def _list(self, request: SandboxRequest) -> Response:
        self._auth(request)
        ref = request.query.get("client_ref")
        return json_response(
            200, {"items": [t for t in self.transfers.values() if t["client_ref"] == ref]}
        )

    def _get(self, request: SandboxRequest) -> Response:
        self._auth(request)
        transfer = self.transfers.get(request.params["id"])
        if transfer is None:
            raise _error(404, "E404", "no such transfer")
        return json_response(200, transfer)

    def _rate(self, request: SandboxRequest) -> Response:
        self._auth(request)
        pair = request.params["pair"]
        if pair not in RATES:
            raise _error(400, "E301", f"no rate for {pair}")
        now = self.now()
        return json_response(
            200,
            {
                "pair": pair,
                "mid": RATES[pair],
                "quoted_at": utc_iso(now),
                "expires_at": utc_iso(now + 60),
            },
        )

    def _camt(self, request: SandboxRequest) -> Response:
        self._auth(request)
        if request.params["acct"] != ACCOUNT:
            raise _error(404, "E404", "no such account")
        try:
            start, end = (date.fromisoformat(request.query.get(k, "")) for k in ("from", "to"))
        except ValueError:
            raise _error(400, "E300", "from and to are YYYY-MM-DD") from None
        settled = [
            t
            for t in self.transfers.values()
            if t["settled_on"] and start <= date.fromisoformat(t["settled_on"]) <= end
        ]
        return Response(200, camt053(settled, start, end), "application/xml")

    def _settle(self, request: SandboxRequest) -> Response:
        transfer = self.transfers.get(request.params["id"])
        if transfer is None or transfer["state"] != "RECEIVED":
            raise ApiError(409, {"error_code": "E409", "message": "not a received transfer"})
        code = request.json().get("return_code")
        transfer["state"], transfer["return_code"] = (
            ("RETURNED", code) if code else ("SETTLED", None)
        )
        transfer["settled_on"] = datetime.fromtimestamp(self.now(), UTC).date().isoformat()
        return json_response(200, transfer)


def camt053(transfers: list[dict[str, Any]], start: date, end: date) -> bytes:
    """A minimal camt.053.001.08 statement of ``ACCOUNT``: one debit entry per settled transfer."""
    root = ET.Element("Document", {"xmlns": CAMT053_NS})
    stmt = ET.SubElement(ET.SubElement(root, "BkToCstmrStmt"), "Stmt")
    ET.SubElement(stmt, "Id").text = f"{ACCOUNT}-{start:%Y%m%d}-{end:%Y%m%d}"
    account_id = ET.SubElement(ET.SubElement(ET.SubElement(stmt, "Acct"), "Id"), "Othr")
    ET.SubElement(account_id, "Id").text = ACCOUNT
    for transfer in transfers:
        entry = ET.SubElement(stmt, "Ntry")
        ET.SubElement(entry, "Amt", {"Ccy": "KRW"}).text = str(transfer["amount_minor"])
        ET.SubElement(entry, "CdtDbtInd").text = "DBIT"
        ET.SubElement(ET.SubElement(entry, "BookgDt"), "Dt").text = transfer["settled_on"]
        refs = ET.SubElement(ET.SubElement(ET.SubElement(entry, "NtryDtls"), "TxDtls"), "Refs")
        ET.SubElement(refs, "EndToEndId").text = transfer["client_ref"]
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


class ExampleBankDriver(SandboxControl):
    """The conformance kit's controls (``adapters.conformance.BankDriver``, ``FaultDriver``)."""

    fault_operations = {"create_payout": "transfer_create"}
    currency = "KRW"
    statement_account = ACCOUNT
    quote_pair = ("KRW", "CNY")
    beneficiary = BankAccount("3333-01-1234567", "Busan Glow Cosmetics", "KAKAKR22", "KR")

    def _transfers(self, reference: str) -> list[dict[str, Any]]:
        return [t for t in self.get("/state")["transfers"] if t["client_ref"] == reference]

    def complete_payout(self, *, reference: str, provider_id: str | None) -> None:
        (transfer,) = self._transfers(reference)
        self.post(f"/transfers/{transfer['transfer_id']}/settle")

    def reject_payout(self, *, reference: str, provider_id: str | None) -> None:
        (transfer,) = self._transfers(reference)
        self.post(f"/transfers/{transfer['transfer_id']}/settle", {"return_code": "E102"})

    def count(self, *, reference: str) -> int:
        return len(self._transfers(reference))


def sandbox_handle() -> SandboxHandle:
    """The conformance hook's sandbox: started on a free loopback port."""
    server = ExampleBankSandbox(timeout_seconds=3.0).start()
    driver = ExampleBankDriver(server.base_url)

    def stop() -> None:
        driver.close()
        server.stop()

    return SandboxHandle(
        base_url=server.base_url,
        config={"base_url": server.base_url},
        credentials={"api_key": API_KEY},
        driver=driver,
        stop=stop,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Example Bank's sandbox on loopback.")
    parser.add_argument("--port", type=int, default=8601)
    port = parser.parse_args().port
    with ExampleBankSandbox(port=port) as server:
        print(
            f"Example Bank sandbox on {server.base_url} (api key {API_KEY}); Ctrl-C stops it",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
