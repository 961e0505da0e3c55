"""The ledger over HTTP: what a merchant's finance team and the operator see and may do, and the
exact error for each refusal with nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from settlement.models import Account, Transfer
from tests.conftest import Api, Tenant, error_of

pytestmark = pytest.mark.django_db


def opened(api: Api, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/accounts", body, key=tenant.key)
    assert response.status_code == 201, response.content
    return dict(response.json())


@pytest.fixture
def books(api: Api, tenants: dict[str, Tenant]) -> dict[str, dict[str, Any]]:
    operator, merchant = tenants["operator"], tenants["merchant"]
    return {
        "equity": opened(api, operator, currency="CNY", kind="equity"),
        "cny": opened(api, merchant, currency="CNY", kind="merchant_settlement"),
        "krw": opened(api, merchant, currency="KRW", kind="merchant_settlement"),
        "other": opened(
            api,
            operator,
            currency="CNY",
            kind="merchant_settlement",
            owner=tenants["other_merchant"].id,
        ),
    }


def pay(api: Api, tenants: dict[str, Tenant], body: dict[str, Any]) -> Any:
    return api.post("/v1/transfers", body, key=tenants["operator"].key)


def fund(api, tenants, books, amount="100.00", **extra):
    body = {
        "debit_account": books["equity"]["id"],
        "credit_account": books["cny"]["id"],
        "amount": {"amount": amount, "currency": "CNY"},
        **extra,
    }
    response = pay(api, tenants, body)
    assert response.status_code == 201, response.content
    return response.json()


def balances_of(api: Api, tenant: Tenant, account: dict[str, Any]) -> dict[str, str]:
    response = api.get(f"/v1/accounts/{account['id']}", key=tenant.key)
    assert response.status_code == 200
    return dict(response.json()["balances"])


# --- accounts ------------------------------------------------------------------------------------


def test_a_merchant_opens_its_settlement_accounts(api, tenants, books):
    merchant = tenants["merchant"]
    cny = books["cny"]
    assert cny["id"].startswith("acct_")
    assert {k: v for k, v in cny.items() if k not in ("id", "created_at")} == {
        "object": "account",
        "livemode": False,
        "owner": merchant.id,
        "currency": "CNY",
        "kind": "merchant_settlement",
        "normal_balance": "credit",
        "debits_must_not_exceed_credits": True,
        "credits_must_not_exceed_debits": False,
        "hot": False,
        "balances": {
            "currency": "CNY",
            "posted": "0.00",
            "pending": "0.00",
            "available": "0.00",
            "debits_posted": "0.00",
            "credits_posted": "0.00",
            "debits_pending": "0.00",
            "credits_pending": "0.00",
        },
        "version": 0,
        "reference": "",
        "metadata": {},
    }
    assert books["krw"]["balances"]["posted"] == "0"
    listed = api.get("/v1/accounts", key=merchant.key).json()
    assert sorted(a["id"] for a in listed["data"]) == sorted([cny["id"], books["krw"]["id"]])


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"currency": "CNY", "kind": "fees"}, 403, "kind_forbidden", None),
        (
            {"currency": "CNY", "kind": "merchant_settlement", "owner": "par_x"},
            403,
            "owner_forbidden",
            None,
        ),
        (
            {"currency": "EUR", "kind": "merchant_settlement"},
            400,
            "currency_unsupported",
            "currency",
        ),
        ({"currency": "CNY", "kind": "piggy_bank"}, 400, "parameter_invalid", "kind"),
        (
            {
                "currency": "CNY",
                "kind": "merchant_settlement",
                "debits_must_not_exceed_credits": False,
            },
            403,
            "flag_forbidden",
            None,
        ),
        (
            {"currency": "CNY", "kind": "merchant_settlement", "colour": "red"},
            400,
            "parameter_unknown",
            "colour",
        ),
    ],
)
def test_what_a_merchant_may_not_open(api, tenants, body, status, code, param):
    response = api.post("/v1/accounts", body, key=tenants["merchant"].key)
    assert response.status_code == status, response.content
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param)
    assert Account.objects.count() == 0


def test_the_operator_opens_any_account_but_not_a_kind_the_owner_cannot_hold(api, tenants):
    response = api.post(
        "/v1/accounts",
        {"currency": "KRW", "kind": "bank_cash", "owner": tenants["merchant"].id},
        key=tenants["operator"].key,
    )
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["param"]) == ("kind_invalid", "kind")
    created = opened(
        api, tenants["operator"], currency="KRW", kind="bank_cash", owner=tenants["bank"].id
    )
    assert (created["owner"], created["normal_balance"]) == (tenants["bank"].id, "debit")


def test_another_merchants_account_is_not_there(api, tenants, books):
    response = api.get(f"/v1/accounts/{books['other']['id']}", key=tenants["merchant"].key)
    assert (response.status_code, error_of(response)["code"]) == (404, "resource_missing")
    response = api.get(f"/v1/accounts/{books['other']['id']}/balance", key=tenants["merchant"].key)
    assert response.status_code == 404


# --- transfers -----------------------------------------------------------------------------------


def test_a_transfer_and_its_repeat(api, tenants, books):
    body = {
        "id": "fund-cny-1",
        "debit_account": books["equity"]["id"],
        "credit_account": books["cny"]["id"],
        "amount": {"amount": "100.00", "currency": "CNY"},
        "reference": "opening",
        "metadata": {"order": "A-1"},
    }
    first = pay(api, tenants, body)
    assert first.status_code == 201, first.content
    out = first.json()
    assert {k: v for k, v in out.items() if k != "created_at"} == {
        "id": "fund-cny-1",
        "object": "transfer",
        "livemode": False,
        "type": "single",
        "status": "posted",
        "debit_account": books["equity"]["id"],
        "credit_account": books["cny"]["id"],
        "amount": {"amount": "100.00", "currency": "CNY"},
        "pending_transfer": None,
        "pending_amount": None,
        "posted_amount": None,
        "expires_at": None,
        "reference": "opening",
        "code": "",
        "corrects": None,
        "metadata": {"order": "A-1"},
    }
    again = pay(api, tenants, body)
    assert (again.status_code, again.json()) == (200, out)
    changed = pay(api, tenants, {**body, "amount": {"amount": "100.01", "currency": "CNY"}})
    assert changed.status_code == 409
    assert (error_of(changed)["code"], error_of(changed)["param"]) == ("transfer_exists", "amount")
    assert balances_of(api, tenants["merchant"], books["cny"])["posted"] == "100.00"
    assert Transfer.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "status", "code", "param"),
    [
        ({"amount": {"amount": "100.01", "currency": "CNY"}}, 409, "insufficient_funds", "amount"),
        (
            {"amount": {"amount": "1.001", "currency": "CNY"}},
            400,
            "amount_precision",
            "amount.amount",
        ),
        ({"amount": {"amount": "0", "currency": "CNY"}}, 400, "amount_too_small", "amount.amount"),
        (
            {"amount": {"amount": "-1.00", "currency": "CNY"}},
            400,
            "amount_negative",
            "amount.amount",
        ),
        ({"amount": {"amount": "5", "currency": "KRW"}}, 400, "currency_mismatch", "debit_account"),
        (
            {"credit_account": "acct_00000000000000000000000000"},
            400,
            "account_missing",
            "credit_account",
        ),
        ({"credit_account": "KEY"}, 400, "account_missing", "credit_account"),
        ({"id": "has space"}, 400, "parameter_invalid", "id"),
        ({"id": "batch"}, 400, "parameter_invalid", "id"),
        ({"timeout": 60}, 400, "parameter_invalid", "timeout"),
        ({"pending": True, "timeout": 0}, 400, "parameter_invalid", "timeout"),
        ({"amount": 5}, 400, "parameter_invalid", "amount"),
    ],
)
def test_transfers_that_are_refused_change_nothing(
    api, tenants, books, change, status, code, param
):
    fund(api, tenants, books)
    body = {
        "debit_account": books["cny"]["id"],
        "credit_account": books["other"]["id"],
        "amount": {"amount": "50.00", "currency": "CNY"},
        **change,
    }
    before = balances_of(api, tenants["operator"], books["cny"]), Transfer.objects.count()
    response = pay(api, tenants, body)
    assert response.status_code == status, response.content
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param)
    assert (balances_of(api, tenants["operator"], books["cny"]), Transfer.objects.count()) == before


def test_a_hold_posted_in_part_over_http(api, tenants, books):
    fund(api, tenants, books)
    hold = pay(
        api,
        tenants,
        {
            "id": "payout-hold-1",
            "debit_account": books["cny"]["id"],
            "credit_account": books["other"]["id"],
            "amount": {"amount": "60.00", "currency": "CNY"},
            "pending": True,
            "timeout": 3600,
        },
    ).json()
    assert (hold["type"], hold["status"]) == ("pending", "pending")
    assert balances_of(api, tenants["merchant"], books["cny"])["available"] == "40.00"

    wrong = api.post(
        "/v1/transfers/payout-hold-1/post",
        {"amount": {"amount": "10", "currency": "KRW"}},
        key=tenants["operator"].key,
    )
    assert (wrong.status_code, error_of(wrong)["code"]) == (400, "currency_mismatch")
    posted = api.post(
        "/v1/transfers/payout-hold-1/post",
        {"amount": {"amount": "45.50", "currency": "CNY"}, "id": "payout-post-1"},
        key=tenants["operator"].key,
    )
    assert posted.status_code == 201, posted.content
    assert (posted.json()["type"], posted.json()["pending_transfer"]) == ("post", "payout-hold-1")
    assert posted.json()["pending_amount"] == {"amount": "60.00", "currency": "CNY"}

    held = api.get("/v1/transfers/payout-hold-1", key=tenants["merchant"].key).json()
    assert (held["status"], held["posted_amount"]) == (
        "posted",
        {"amount": "45.50", "currency": "CNY"},
    )
    assert balances_of(api, tenants["merchant"], books["cny"]) == {
        "currency": "CNY",
        "posted": "54.50",
        "pending": "0.00",
        "available": "54.50",
        "debits_posted": "45.50",
        "credits_posted": "100.00",
        "debits_pending": "0.00",
        "credits_pending": "0.00",
    }
    void = api.post("/v1/transfers/payout-hold-1/void", {}, key=tenants["operator"].key)
    assert (void.status_code, error_of(void)["code"]) == (409, "pending_transfer_posted")


def test_balance_at_a_past_time(api, tenants, books):
    fund(api, tenants, books, "30.00")
    between = timezone.now()
    fund(api, tenants, books, "12.00")
    url = f"/v1/accounts/{books['cny']['id']}/balance"
    past = api.get(url, key=tenants["merchant"].key, params={"at": between.isoformat()})
    assert past.status_code == 200, past.content
    assert past.json()["balances"]["posted"] == "30.00"
    assert api.get(url, key=tenants["merchant"].key).json()["balances"]["posted"] == "42.00"
    bad = api.get(url, key=tenants["merchant"].key, params={"at": "yesterday"})
    assert (bad.status_code, error_of(bad)["param"]) == (400, "at")
    naive = api.get(url, key=tenants["merchant"].key, params={"at": "2026-11-28T10:00:00"})
    assert naive.status_code == 400


def test_lists_show_each_participant_its_own_transfers_with_filters_and_cursors(
    api, tenants, books
):
    for n in range(5):
        fund(
            api,
            tenants,
            books,
            f"{n + 1}.00",
            id=f"f-{n}",
            reference=f"ref-{n % 2}",
            metadata={"batch": "b1" if n < 3 else "b2"},
        )
    pay(
        api,
        tenants,
        {
            "id": "o-1",
            "debit_account": books["equity"]["id"],
            "credit_account": books["other"]["id"],
            "amount": {"amount": "9.00", "currency": "CNY"},
        },
    )
    merchant = tenants["merchant"]

    def ids(**params: str) -> list[str]:
        response = api.get("/v1/transfers", key=merchant.key, params=params)
        assert response.status_code == 200, response.content
        return [t["id"] for t in response.json()["data"]]

    assert ids() == ["f-4", "f-3", "f-2", "f-1", "f-0"]
    assert ids(reference="ref-1") == ["f-3", "f-1"]
    assert ids(**{"metadata[batch]": "b2"}) == ["f-4", "f-3"]
    assert ids(account=books["cny"]["id"], limit="2") == ["f-4", "f-3"]
    assert ids(limit="2", starting_after="f-3") == ["f-2", "f-1"]
    assert ids(limit="2", ending_before="f-1") == ["f-3", "f-2"]
    assert ids(type="pending") == []
    everything = api.get("/v1/transfers", key=tenants["operator"].key).json()["data"]
    assert everything[0]["id"] == "o-1"
    unknown = api.get("/v1/transfers", key=merchant.key, params={"starting_after": "nope"})
    assert (unknown.status_code, error_of(unknown)["param"]) == (400, "starting_after")
    foreign = api.get("/v1/transfers/o-1", key=merchant.key)
    assert foreign.status_code == 404


def test_batches_over_http(api, tenants, books):
    def item(amount: str, **extra: Any) -> dict[str, Any]:
        return {
            "debit_account": books["cny"]["id"],
            "credit_account": books["other"]["id"],
            "amount": {"amount": amount, "currency": "CNY"},
            **extra,
        }

    fund(api, tenants, books, "10.00")
    refused = api.post(
        "/v1/transfers/batch",
        {"transfers": [item("6.00"), item("4.00"), item("0.01")]},
        key=tenants["operator"].key,
    )
    assert refused.status_code == 409
    assert (error_of(refused)["code"], error_of(refused)["param"]) == (
        "batch_refused",
        "transfers[2].amount",
    )
    assert balances_of(api, tenants["operator"], books["cny"])["posted"] == "10.00"

    each = api.post(
        "/v1/transfers/batch",
        {"transfers": [item("6.00", id="x-1"), item("6.00", id="x-2")], "atomic": False},
        key=tenants["operator"].key,
    )
    assert each.status_code == 201, each.content
    body = each.json()
    assert (body["created"], body["exists"], body["failed"]) == (1, 0, 1)
    assert body["results"][1]["error"]["code"] == "insufficient_funds"
    malformed = api.post(
        "/v1/transfers/batch",
        {"transfers": [item("1.00"), {**item("1.00"), "amount": "1.00"}]},
        key=tenants["operator"].key,
    )
    assert (malformed.status_code, error_of(malformed)["param"]) == (400, "transfers[1].amount")
    assert Transfer.objects.count() == 2


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"metadata[order__contains]": "A"}, "metadata[order__contains]"),
        ({"metadata[order__regex]": "("}, "metadata[order__regex]"),
        ({"created[gte]": "0001-01-01T00:00:00+01:00"}, "created[gte]"),
        ({"reference": "a\x00b"}, "reference"),
        ({"account": "\x00"}, "account"),
    ],
)
def test_hostile_filters_are_400s(api, tenants, books, params, param):
    response = api.get("/v1/transfers", key=tenants["merchant"].key, params=params)
    assert response.status_code == 400, response.content
    assert (error_of(response)["code"], error_of(response)["param"]) == ("parameter_invalid", param)


def test_a_past_balance_before_1970_is_a_400(api, tenants, books):
    url = f"/v1/accounts/{books['cny']['id']}/balance"
    response = api.get(url, key=tenants["merchant"].key, params={"at": "0001-01-01T00:00:00Z"})
    assert (response.status_code, error_of(response)["param"]) == (400, "at")


def test_another_tenants_transfer_id_is_no_cursor(api, tenants, books):
    pay(
        api,
        tenants,
        {
            "id": "theirs-1",
            "debit_account": books["equity"]["id"],
            "credit_account": books["other"]["id"],
            "amount": {"amount": "1.00", "currency": "CNY"},
        },
    )
    fund(api, tenants, books, "1.00", id="mine-1")
    merchant = tenants["merchant"]
    response = api.get("/v1/transfers", key=merchant.key, params={"starting_after": "theirs-1"})
    assert (response.status_code, error_of(response)["param"]) == (400, "starting_after")
    response = api.get("/v1/transfers", key=merchant.key, params={"starting_after": "nope-1"})
    assert error_of(response)["message"] == "starting_after names no transfer."


def test_the_hubs_own_codes_are_kept(api, tenants, books):
    response = pay(
        api,
        tenants,
        {
            "debit_account": books["equity"]["id"],
            "credit_account": books["cny"]["id"],
            "amount": {"amount": "1.00", "currency": "CNY"},
            "code": "payout",
        },
    )
    assert (response.status_code, error_of(response)["param"]) == (400, "code")
    assert Transfer.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({}, "parameter_missing", "debit_account"),
        ({"debit_account": "acct_x", "credit_account": "acct_y"}, "parameter_missing", "amount"),
        ([], "invalid_json", None),
        ({"debit_account": 5}, "parameter_invalid", "debit_account"),
    ],
)
def test_malformed_transfers_answer_the_same_every_time(api, tenants, body, code, param):
    # Validation keeps one serializer per thread: a bad request must not leave anything behind
    # for the next one.
    for _ in range(2):
        response = pay(api, tenants, body)
        assert response.status_code == 400, response.content
        assert (error_of(response)["code"], error_of(response)["param"]) == (code, param)
    good = pay(
        api,
        tenants,
        {
            "debit_account": opened(api, tenants["operator"], currency="CNY", kind="equity")["id"],
            "credit_account": opened(
                api, tenants["merchant"], currency="CNY", kind="merchant_settlement"
            )["id"],
            "amount": {"amount": "1.00", "currency": "CNY"},
        },
    )
    assert good.status_code == 201, good.content
