"""FX fixtures: a merchant with funded CNY and KRW settlement accounts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from settlement.ledger import TransferSpec, transfer_create
from settlement.models import Account
from tests.conftest import Api, Tenant
from tests.factories.ledger import open_account


@dataclass
class Desk:
    api: Api
    merchant: Tenant
    operator: Tenant
    cny: Account
    krw: Account

    def quote(self, **body: Any) -> Any:
        payload = {"lock_seconds": 300, **body}
        return self.api.post("/v1/fx/quotes", payload, key=self.merchant.key)

    def convert(self, quote_id: str, reference: str = "conv-1", **extra: Any) -> Any:
        body = {
            "quote": quote_id,
            "sell_account": extra.pop("sell_account", None),
            "buy_account": extra.pop("buy_account", None),
            "reference": reference,
            **extra,
        }
        return self.api.post("/v1/fx/conversions", body, key=self.merchant.key)


def fund(account: Account, amount: int) -> None:
    equity = open_account(Account.Kind.EQUITY, account.currency)
    transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=equity.pk,
            credit_account_id=account.pk,
            amount=amount,
            currency=account.currency,
        ),
    )


@pytest.fixture
def desk(api: Api, tenants: dict[str, Tenant]) -> Desk:
    merchant = tenants["merchant"]
    accounts = {
        currency: Account.objects.get(
            pk=api.post(
                "/v1/accounts",
                {"currency": currency, "kind": "merchant_settlement"},
                key=merchant.key,
            ).json()["id"]
        )
        for currency in ("CNY", "KRW")
    }
    fund(accounts["CNY"], 1_000_000_00)
    fund(accounts["KRW"], 100_000_000)
    return Desk(api, merchant, tenants["operator"], accounts["CNY"], accounts["KRW"])
