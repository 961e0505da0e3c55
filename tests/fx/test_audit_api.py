"""The regulator's audit API over real requests: search, proofs against the latest or an
older checkpoint, consistency proofs, statistics, CSV and Parquet exports, and the audit trail
that keeps every read."""

from __future__ import annotations

import base64
import csv
import io

import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.db import connection

from fx import audit_api
from fx.models import Receipt
from fx.receipts import receipts_issue
from hub.models import AuditEntry
from hub.transparency import merkle
from hub.transparency.bundle import verify_bundle
from hub.transparency.keys import signing_keys
from tests.conftest import Tenant, error_of
from tests.factories.receipts import settle


@pytest.fixture
def issued(tenants: dict[str, Tenant]) -> list[Receipt]:
    settle(tenants, amounts=[150000, 20000, 9999], days_ago=2)
    receipts_issue()
    return list(Receipt.objects.order_by("leaf_index"))


def test_the_regulator_searches_receipts_by_their_fields(api, tenants, issued):
    regulator = tenants["regulator"]
    merchant, day = tenants["merchant"].id, issued[0].settled_on.isoformat()
    cases = {
        "": 3,
        f"?merchant={merchant}": 3,
        f"?merchant={tenants['other_merchant'].id}": 0,
        f"?institution={tenants['payment_institution'].id}": 3,
        "?currency=KRW": 3,
        "?currency=CNY": 0,
        "?customs_mode=9610": 3,
        "?customs_mode=9710": 0,
        "?trade_type=B2C": 3,
        "?trade_type=B2B": 0,
        "?outcome=verified": 3,
        "?outcome=rejected": 0,
        "?direction=inbound": 3,
        f"?settled_from={day}&settled_to={day}": 3,
        "?settled_to=2000-01-01": 0,
    }
    for query, count in cases.items():
        response = api.get(f"/v1/receipts{query}", key=regulator.key)
        assert response.status_code == 200, (query, response.json())
        assert len(response.json()["data"]) == count, query
    first = api.get("/v1/receipts?limit=2", key=regulator.key).json()
    assert [r["id"] for r in first["data"]] == [issued[2].pk, issued[1].pk]
    assert first["has_more"] is True
    assert first["data"][0]["amount"] == {"amount": "9999", "currency": "KRW"}


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("merchant=acct_x", "merchant"),
        ("settled_from=2026-13-01", "settled_from"),
        ("settled_to=yesterday", "settled_to"),
        ("currency=krw", "currency"),
        ("customs_mode=1234", "customs_mode"),
        ("outcome=review", "outcome"),
        ("trade_type=C2C", "trade_type"),
        ("limit=0", "limit"),
    ],
)
def test_bad_search_parameters_are_refused(api, tenants, issued, query, param):
    response = api.get(f"/v1/receipts?{query}", key=tenants["regulator"].key)

    assert (response.status_code, error_of(response)["param"]) == (400, param)


def test_a_receipt_shows_the_exact_signed_json(api, tenants, issued):
    receipt = issued[1]

    body = api.get(f"/v1/receipts/{receipt.pk}", key=tenants["regulator"].key).json()

    assert body["signed"]["body"].encode() == bytes(receipt.body)
    assert base64.b64decode(body["signed"]["signature"]) == bytes(receipt.signature)
    assert (body["leaf_index"], body["outcome"], body["verification"]) == (
        1,
        "verified",
        receipt.verification_id,
    )


def test_the_proof_bundle_verifies_against_the_latest_and_an_older_checkpoint(api, tenants, issued):
    regulator, operator = tenants["regulator"], tenants["operator"]
    published = api.post("/v1/audit/checkpoints", {}, key=operator.key)
    assert (published.status_code, published.json()["tree_size"]) == (201, 3)
    settle(tenants, amounts=[7000, 8000], prefix="LATER")
    receipts_issue()
    api.post("/v1/audit/checkpoints", {}, key=operator.key)

    latest = api.get(f"/v1/receipts/{issued[0].pk}/proof", key=regulator.key).json()
    older = api.get(f"/v1/receipts/{issued[0].pk}/proof?tree_size=3", key=regulator.key).json()

    assert latest["log"]["tree_size"] == 5
    assert older["log"]["tree_size"] == 3
    keys = [k.vkey for k in signing_keys()]
    for bundle in (latest, older):
        result = verify_bundle(bundle, trusted_keys=keys)
        assert result.ok, result.checks


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("tree_size=2", 400, "checkpoint_missing"),
        ("tree_size=abc", 400, "parameter_invalid"),
        ("tree_size=-1", 400, "parameter_invalid"),
    ],
)
def test_proofs_against_checkpoints_that_do_not_exist_are_refused(
    api, tenants, issued, query, status, code
):
    response = api.get(f"/v1/receipts/{issued[0].pk}/proof?{query}", key=tenants["regulator"].key)

    assert (response.status_code, error_of(response)["code"]) == (status, code)


def test_consistency_proofs_prove_the_log_only_grew(api, tenants, issued):
    regulator = tenants["regulator"]
    old = api.get("/v1/audit/checkpoints/latest", key=regulator.key).json()
    settle(tenants, amounts=[7000, 8000], prefix="LATER")
    receipts_issue()
    api.post("/v1/audit/checkpoints", {}, key=tenants["operator"].key)
    new = api.get("/v1/audit/checkpoints/latest", key=regulator.key).json()

    proof = api.get(
        f"/v1/audit/consistency?from={old['tree_size']}&to={new['tree_size']}", key=regulator.key
    ).json()

    assert (old["tree_size"], new["tree_size"]) == (3, 5)
    assert (proof["from_root"], proof["to_root"]) == (old["root_hash"], new["root_hash"])
    assert merkle.verify_consistency(
        3,
        5,
        base64.b64decode(old["root_hash"]),
        base64.b64decode(new["root_hash"]),
        [base64.b64decode(node) for node in proof["proof"]],
    )
    listed = api.get("/v1/audit/checkpoints", key=regulator.key).json()
    # One published by each issuing batch, and the operator's on demand.
    assert [c["tree_size"] for c in listed["data"]] == [5, 5, 3]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("from=0&to=3", "from"),
        ("from=3&to=2", "from"),
        ("from=1&to=4", "to"),
        ("from=x&to=3", "from"),
        ("to=3", "from"),
    ],
)
def test_bad_consistency_requests_are_refused(api, tenants, issued, query, param):
    response = api.get(f"/v1/audit/consistency?{query}", key=tenants["regulator"].key)

    assert (response.status_code, error_of(response)["param"]) == (400, param)


def test_statistics_count_and_add_per_group_and_currency(api, tenants, issued):
    response = api.get(
        "/v1/audit/statistics?group_by=month,customs_mode,country", key=tenants["regulator"].key
    )

    body = response.json()
    month = issued[0].settled_on.strftime("%Y-%m")
    assert body["group_by"] == ["month", "customs_mode", "country", "currency"]
    assert body["data"] == [
        {
            "month": month,
            "customs_mode": "9610",
            "country": "KR",
            "currency": "KRW",
            "count": 3,
            "amount": {"amount": "179999", "currency": "KRW"},
        }
    ]
    bad = api.get("/v1/audit/statistics?group_by=month,colour", key=tenants["regulator"].key)
    assert (bad.status_code, error_of(bad)["param"]) == (400, "group_by")


@pytest.mark.parametrize("chunk", [20_000, 2, 1])
def test_exports_as_csv_and_parquet_hold_the_same_rows(api, tenants, issued, chunk, monkeypatch):
    """Written a chunk at a time: in one, or in row groups of 2 or 1 (the last one short)."""
    monkeypatch.setattr(audit_api, "EXPORT_CHUNK", chunk)
    regulator = tenants["regulator"]

    as_csv = api.get("/v1/receipts/export?format=csv", key=regulator.key)
    as_parquet = api.get("/v1/receipts/export?format=parquet", key=regulator.key)

    assert as_csv["Content-Disposition"] == 'attachment; filename="receipts.csv"'
    assert (as_csv["Row-Count"], as_parquet["Row-Count"]) == ("3", "3")
    rows = list(csv.DictReader(io.StringIO(b"".join(as_csv.streaming_content).decode())))
    assert pq.ParquetFile(io.BytesIO(as_parquet.content)).num_row_groups == -(-3 // chunk)
    frame = pd.read_parquet(io.BytesIO(as_parquet.content))
    assert [r["id"] for r in rows] == [r.pk for r in issued]
    assert [r["amount"] for r in rows] == ["150000", "20000", "9999"]
    assert list(frame["id"]) == [r.pk for r in issued]
    assert list(frame["amount"]) == ["150000", "20000", "9999"]
    assert list(frame["leaf_index"]) == [0, 1, 2]
    bad = api.get("/v1/receipts/export?format=xlsx", key=regulator.key)
    assert (bad.status_code, error_of(bad)["param"]) == (400, "format")


def test_an_export_holds_the_receipts_there_were_when_it_began(api, tenants, issued, monkeypatch):
    """Streamed a page at a time, each page its own query: receipts issued while the file is
    being sent are not in it, and it holds as many rows as its Row-Count says."""
    monkeypatch.setattr(audit_api, "EXPORT_CHUNK", 1)
    response = api.get("/v1/receipts/export?format=csv", key=tenants["regulator"].key)
    stream = iter(response.streaming_content)
    first = [next(stream)]  # the header and the first page: one receipt
    assert first[0].decode().count("\r\n") == 2
    if connection.vendor == "postgresql":  # no cursor left open on the server between pages
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_cursors")
            assert cursor.fetchone()[0] == 0

    settle(tenants, amounts=[777, 888], days_ago=1, prefix="KR-LATER")
    assert len(receipts_issue()) == 2
    assert Receipt.objects.count() == 5

    text = b"".join([*first, *stream]).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert response["Row-Count"] == "3"
    assert [r["id"] for r in rows] == [r.pk for r in issued]
    assert [r["leaf_index"] for r in rows] == ["0", "1", "2"]


def test_an_export_that_selects_nothing_is_its_header_or_an_empty_table(api, tenants, issued):
    regulator = tenants["regulator"]
    query = "settled_from=2001-01-01&settled_to=2001-01-31"

    as_csv = api.get(f"/v1/receipts/export?format=csv&{query}", key=regulator.key)
    as_parquet = api.get(f"/v1/receipts/export?format=parquet&{query}", key=regulator.key)

    assert (as_csv["Row-Count"], as_parquet["Row-Count"]) == ("0", "0")
    text = b"".join(as_csv.streaming_content).decode()
    assert text == ",".join(audit_api.EXPORT_COLUMNS) + "\r\n"
    frame = pd.read_parquet(io.BytesIO(as_parquet.content))
    assert (len(frame), list(frame.columns)) == (0, list(audit_api.EXPORT_COLUMNS))


def test_an_export_over_its_row_limit_is_refused(api, tenants, issued, monkeypatch):
    regulator = tenants["regulator"]
    monkeypatch.setattr(audit_api, "EXPORT_ROWS", 3)
    assert api.get("/v1/receipts/export?format=parquet", key=regulator.key).status_code == 200
    monkeypatch.setattr(audit_api, "EXPORT_ROWS", 2)

    refused = api.get("/v1/receipts/export?format=csv", key=regulator.key)

    assert (refused.status_code, error_of(refused)["code"]) == (400, "export_too_large")


def test_every_read_is_kept_in_the_audit_trail_refused_ones_too(api, tenants, issued):
    regulator, merchant = tenants["regulator"], tenants["merchant"]
    before = AuditEntry.objects.count()

    api.get("/v1/receipts?currency=KRW", key=regulator.key)
    api.get(f"/v1/receipts/{issued[0].pk}/proof", key=regulator.key)
    refused = api.get("/v1/receipts", key=merchant.key)

    entries = list(AuditEntry.objects.order_by("created_at", "id")[before:])
    assert refused.status_code == 403
    assert [(e.participant_id, e.method, e.path, e.status_code) for e in entries] == [
        (regulator.id, "GET", "/v1/receipts?currency=KRW", 200),
        (regulator.id, "GET", f"/v1/receipts/{issued[0].pk}/proof", 200),
        (merchant.id, "GET", "/v1/receipts", 403),
    ]


def test_the_keys_list_names_every_signing_key(api, tenants, issued):
    body = api.get("/v1/audit/keys", key=tenants["regulator"].key).json()

    assert [k["public_key"] for k in body["data"]] == [k.vkey for k in signing_keys()]
    assert body["data"][0]["key_id"] == issued[0].key_id
