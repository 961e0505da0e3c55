"""Bulk files: CSV and JSON lines, partial and all-or-nothing, per-row errors, whole-file
refusals that store nothing, and the speed of a 100,000-row file."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from hub.models import Event
from tests.conftest import error_of
from tests.factories import principal_for
from tests.factories.trade import (
    ContractFactory,
    OrderFactory,
    as_csv,
    as_jsonl,
    order_rows,
    payment_rows,
)
from tests.trade.test_documents import state
from trade import uploads
from trade.models import DocumentUpload, Order, PaymentRecord
from trade.uploads import upload_create

URL = "/v1/trade/uploads"


@pytest.fixture
def merchant(tenants):
    return tenants["merchant"]


@pytest.fixture
def actor(merchant):
    return principal_for(merchant.participant)


def rows(count: int, **over: Any) -> list[dict[str, str]]:
    return [{**row, **over} for row in order_rows(count)]


def send(api: Any, tenant: Any, data: bytes, name: str = "orders.csv", **form: str) -> Any:
    fields: dict[str, Any] = {"file": SimpleUploadedFile(name, data), "kind": "order", **form}
    return api.client.post(URL, fields, headers={"Authorization": f"Bearer {tenant.key}"})


# --- outcomes ------------------------------------------------------------------------------------


def test_a_clean_csv_file_is_accepted_whole(api, merchant):
    data = as_csv("order", order_rows(3))

    response = send(api, merchant, data, metadata='{"batch": "2026-11-02"}')

    assert response.status_code == 201, response.json()
    body = response.json()
    upload = DocumentUpload.objects.get()
    assert body == {
        "id": upload.pk,
        "object": "document_upload",
        "livemode": False,
        "merchant": merchant.id,
        "kind": "order",
        "format": "csv",
        "mode": "partial",
        "status": "accepted",
        "filename": "orders.csv",
        "sha256": upload.sha256,
        "rows_total": 3,
        "rows_accepted": 3,
        "rows_rejected": 0,
        "errors": [],
        "metadata": {"batch": "2026-11-02"},
        "created_at": body["created_at"],
    }
    orders = list(Order.objects.order_by("order_no"))
    assert [o.order_no for o in orders] == ["ORD-0000000", "ORD-0000001", "ORD-0000002"]
    assert {o.upload_id for o in orders} == {upload.pk}
    assert (orders[1].amount, orders[1].goods_amount, orders[1].shipping_amount) == (
        13_001,
        10_001,
        3_000,
    )
    assert [o.customs_mode for o in orders] == ["1210", "9610", "1210"]
    # One event for the file, none per row.
    assert list(Event.objects.values_list("type", flat=True)) == ["document_upload.created"]
    assert Event.objects.get().data["rows_accepted"] == 3


def test_documents_of_a_file_read_back_like_single_ones(api, merchant):
    send(api, merchant, as_csv("order", order_rows(2)))
    upload = DocumentUpload.objects.get()

    listed = api.get("/v1/trade/orders", key=merchant.key, params={"upload": upload.pk}).json()

    assert [d["order_no"] for d in listed["data"]] == ["ORD-0000001", "ORD-0000000"]
    first = listed["data"][1]
    assert first["upload"] == upload.pk
    assert (first["amount"], first["ordered_at"]) == ("13000", "2026-10-31T15:00:00Z")
    assert first["metadata"] == {}


def mixed_file() -> list[dict[str, str]]:
    good = rows(5)
    good[1]["amount"] = "13001.5"  # row 3: KRW has no decimals
    good[2]["buyer_country"] = "kr"  # row 4
    good[3]["order_no"] = good[0]["order_no"]  # row 5 repeats row 2
    return good


MIXED_ERRORS = [
    {
        "row": 3,
        "code": "amount_precision",
        "param": "amount",
        "message": "KRW amounts have at most 0 decimal places.",
    },
    {
        "row": 4,
        "code": "country_invalid",
        "param": "buyer_country",
        "message": "buyer_country is an ISO 3166-1 alpha-2 country code in upper case, such as "
        "KR or CN.",
    },
    {
        "row": 5,
        "code": "duplicate_in_file",
        "param": "order_no",
        "message": "order_no ORD-0000000 is on row 2 already.",
    },
]


def test_partial_keeps_the_good_rows_and_reports_the_others(actor):
    upload = upload_create(
        actor=actor, kind="order", fmt="csv", mode="partial", data=as_csv("order", mixed_file())
    )

    assert (upload.status, upload.rows_total, upload.rows_accepted, upload.rows_rejected) == (
        "partially_accepted",
        5,
        2,
        3,
    )
    assert upload.errors == MIXED_ERRORS
    assert sorted(Order.objects.values_list("order_no", flat=True)) == [
        "ORD-0000000",
        "ORD-0000004",
    ]


def test_all_or_nothing_stores_no_document_when_a_row_fails(actor):
    before = state()

    upload = upload_create(
        actor=actor,
        kind="order",
        fmt="jsonl",
        mode="all_or_nothing",
        data=as_jsonl(mixed_file()),
    )

    assert (upload.status, upload.rows_total, upload.rows_accepted, upload.rows_rejected) == (
        "rejected",
        5,
        0,
        5,
    )
    # The same rows are named: a JSON lines file has no header, so its rows are one less.
    assert [(e["row"], e["code"]) for e in upload.errors] == [
        (2, "amount_precision"),
        (3, "country_invalid"),
        (4, "duplicate_in_file"),
    ]
    after = state()
    assert after["Order"] == before["Order"] == 0
    assert after["DocumentUpload"] == 1
    assert Event.objects.filter(type="document_upload.created").count() == 1


def test_all_or_nothing_stores_every_row_when_none_fails(actor):
    upload = upload_create(
        actor=actor,
        kind="order",
        fmt="jsonl",
        mode="all_or_nothing",
        data=as_jsonl(order_rows(4)),
    )

    assert (upload.status, upload.rows_accepted) == ("accepted", 4)
    assert Order.objects.count() == 4


def test_numbers_filed_before_are_row_errors(actor, merchant):
    OrderFactory.create(merchant=merchant.participant, order_no="ORD-0000001")

    upload = upload_create(
        actor=actor, kind="order", fmt="csv", mode="partial", data=as_csv("order", order_rows(3))
    )

    assert upload.errors == [
        {
            "row": 3,
            "code": "document_exists",
            "param": "order_no",
            "message": "The merchant has already filed order ORD-0000001.",
        }
    ]
    assert Order.objects.count() == 3


def test_payment_records_name_orders_stored_before(actor, merchant):
    OrderFactory.create(merchant=merchant.participant, order_no="ORD-A")
    OrderFactory.create(merchant=merchant.participant, order_no="ORD-B")
    data = as_csv("payment_record", payment_rows(["ORD-A", "ORD-NOPE", "ORD-B"]))

    upload = upload_create(actor=actor, kind="payment_record", fmt="csv", mode="partial", data=data)

    assert upload.errors == [
        {
            "row": 3,
            "code": "order_missing",
            "param": "order_no",
            "message": "The merchant has filed no order ORD-NOPE; file the order first.",
        }
    ]
    stored = {r.order_no: r.order_id for r in PaymentRecord.objects.all()}
    orders = dict(Order.objects.values_list("order_no", "pk"))
    assert stored == {"ORD-A": orders["ORD-A"], "ORD-B": orders["ORD-B"]}


def test_invoices_link_contracts_and_orders(actor, merchant):
    contract = ContractFactory.create(merchant=merchant.participant, contract_no="CT-1")
    order = OrderFactory.create(merchant=merchant.participant, order_no="ORD-1")
    data = as_jsonl(
        [
            {"invoice_no": "I-1", "contract_no": "CT-1", "currency": "CNY", "amount": "10.00",
             "issued_at": "2026-11-02T10:00:00+08:00"},
            {"invoice_no": "I-2", "order_no": "ORD-1", "currency": "KRW", "amount": "13000",
             "issued_at": "2026-11-02T10:00:00+09:00"},
            {"invoice_no": "I-3", "contract_no": "CT-2", "currency": "CNY", "amount": "1.00",
             "issued_at": "2026-11-02T10:00:00+08:00"},
        ]
    )  # fmt: skip

    upload = upload_create(actor=actor, kind="invoice", fmt="jsonl", mode="partial", data=data)

    assert [(e["row"], e["code"], e["param"]) for e in upload.errors] == [
        (3, "contract_missing", "contract_no")
    ]
    invoices = {i.invoice_no: (i.contract_id, i.order_id) for i in upload_invoices(upload)}
    assert invoices == {"I-1": (contract.pk, None), "I-2": (None, order.pk)}


def upload_invoices(upload: DocumentUpload) -> list[Any]:
    from trade.models import Invoice

    return list(Invoice.objects.filter(upload=upload))


def test_csv_columns_in_any_order_optional_ones_left_out_with_a_bom(actor):
    columns = ["ordered_at", "amount", "goods_amount", "currency", "order_no", "trade_type"]
    columns += ["customs_mode", "buyer_name", "buyer_id", "buyer_country"]
    lines = [{**row, "amount": row["goods_amount"]} for row in order_rows(2)]
    data = b"\xef\xbb\xbf" + as_csv("order", lines, columns=columns)

    upload = upload_create(actor=actor, kind="order", fmt="csv", mode="partial", data=data)

    assert (upload.status, upload.rows_accepted) == ("accepted", 2)
    assert set(Order.objects.values_list("shipping_amount", "tax_amount")) == {(0, 0)}


def test_a_csv_row_of_the_wrong_width_and_blank_lines(actor):
    data = as_csv("order", order_rows(2)) + b"\nORD-X,B2C\n"

    upload = upload_create(actor=actor, kind="order", fmt="csv", mode="partial", data=data)

    assert upload.rows_total == 3
    assert upload.errors == [
        {
            "row": 5,
            "code": "row_malformed",
            "param": None,
            "message": "The row has 2 cells; the header has 12.",
        }
    ]


def test_jsonl_lines_that_are_not_documents_are_row_errors(actor):
    good = list(order_rows(2))
    data = (
        as_jsonl(good[:1])
        + b"{not json\n"
        + b"[1, 2]\n"
        + as_jsonl([{**good[1], "colour": "red"}])
        + as_jsonl([{**good[1], "amount": 13001}])
        + as_jsonl([{**good[1], "amount": 13001.0}])
        + as_jsonl([{**good[1], "tax_amount": None, "shipping_amount": None, "amount": "10001"}])
    )

    upload = upload_create(actor=actor, kind="order", fmt="jsonl", mode="partial", data=data)

    assert [(e["row"], e["code"], e["param"]) for e in upload.errors] == [
        (2, "row_malformed", None),
        (3, "row_malformed", None),
        (4, "parameter_unknown", "colour"),
        (5, "parameter_invalid", "amount"),
        (6, "parameter_invalid", "amount"),
    ]
    assert Order.objects.count() == 2


def test_only_the_first_errors_are_kept_but_all_are_counted(actor, monkeypatch):
    monkeypatch.setattr(uploads, "ERRORS_KEPT", 3)

    upload = upload_create(
        actor=actor,
        kind="order",
        fmt="csv",
        mode="partial",
        data=as_csv("order", rows(10, buyer_country="XX")),
    )

    assert (upload.rows_rejected, [e["row"] for e in upload.errors]) == (10, [2, 3, 4])
    assert upload.status == "rejected"


# --- files refused whole -------------------------------------------------------------------------

HEADER = ",".join(order_rows(1).__iter__().__next__()).encode()
FILES_REFUSED = [
    ("csv", b"order_no\xff\xfe,amount\n", "upload_invalid"),
    ("csv", b"", "upload_empty"),
    ("csv", HEADER + b"\n", "upload_empty"),
    ("csv", HEADER + b",colour\n", "upload_header_invalid"),
    ("csv", HEADER.replace(b"buyer_id,", b"") + b"\n", "upload_header_invalid"),
    ("csv", HEADER + b",order_no\n", "upload_header_invalid"),
    ("csv", HEADER + b'\n"ORD-1,B2C\n', "upload_invalid"),
    ("csv", HEADER + b"\nORD\x00-1\n", "upload_invalid"),
    ("jsonl", b"order_no,amount\nORD-1,5\n", "upload_invalid"),
    ("jsonl", b"[]\n", "upload_invalid"),
    ("jsonl", b"\n\n", "upload_empty"),
]


@pytest.mark.parametrize(("fmt", "data", "code"), FILES_REFUSED)
def test_a_file_that_cannot_be_read_is_400_and_stores_nothing(api, merchant, fmt, data, code):
    before = state()

    response = send(api, merchant, data, name=f"file.{fmt}")

    assert response.status_code == 400, response.json()
    assert (error_of(response)["code"], error_of(response)["param"]) == (code, "file")
    assert state() == before


def test_too_many_rows_is_400_and_stores_nothing(api, merchant, monkeypatch):
    monkeypatch.setattr(uploads, "ROWS_MAX", 5)
    before = state()

    response = send(api, merchant, as_csv("order", order_rows(6)))

    assert error_of(response)["code"] == "upload_too_many_rows"
    assert state() == before
    assert send(api, merchant, as_csv("order", order_rows(5))).status_code == 201


def test_a_file_over_the_size_limit_is_413(api, merchant, monkeypatch):
    data = as_csv("order", order_rows(10))
    monkeypatch.setattr(uploads, "BYTES_MAX", len(data) - 1)
    before = state()

    response = send(api, merchant, data)

    assert response.status_code == 413
    assert state() == before


@pytest.mark.parametrize(
    ("form", "code", "param"),
    [
        ({"kind": "orders"}, "parameter_invalid", "kind"),
        ({"mode": "some"}, "parameter_invalid", "mode"),
        ({"format": "xlsx"}, "parameter_invalid", "format"),
        ({"colour": "red"}, "parameter_unknown", "colour"),
        ({"metadata": "[1]"}, "parameter_invalid", "metadata"),
        ({"metadata": '{"k": 1}'}, "metadata_invalid", "metadata.k"),
        ({"merchant": "par_other"}, "parameter_invalid", "merchant"),
    ],
)
def test_bad_form_fields_are_400(api, merchant, form, code, param):
    before = state()

    response = send(api, merchant, as_csv("order", order_rows(1)), **form)

    assert response.status_code == 400, response.json()
    assert (error_of(response)["code"], error_of(response)["param"]) == (code, param)
    assert state() == before


def test_the_format_follows_the_file_name_or_must_be_given(api, merchant):
    data = as_jsonl(order_rows(1))
    before = state()

    unnamed = send(api, merchant, data, name="orders.txt")

    assert (error_of(unnamed)["code"], error_of(unnamed)["param"]) == (
        "parameter_missing",
        "format",
    )
    assert state() == before
    assert send(api, merchant, data, name="orders.ndjson").json()["format"] == "jsonl"
    given = send(api, merchant, as_jsonl(order_rows(1, start=5)), name="o.txt", format="jsonl")
    assert given.json()["status"] == "accepted"


def test_missing_file_or_kind_and_json_bodies(api, merchant):
    headers = {"Authorization": f"Bearer {merchant.key}"}
    before = state()

    no_file = api.client.post(URL, {"kind": "order"}, headers=headers)
    no_kind = api.client.post(URL, {"file": SimpleUploadedFile("o.csv", b"x")}, headers=headers)
    as_json = api.post(URL, {"kind": "order"}, key=merchant.key)

    assert (error_of(no_file)["code"], error_of(no_file)["param"]) == ("parameter_missing", "file")
    assert (error_of(no_kind)["code"], error_of(no_kind)["param"]) == ("parameter_missing", "kind")
    assert (as_json.status_code, error_of(as_json)["code"]) == (415, "unsupported_media_type")
    assert state() == before


def test_the_operator_uploads_for_a_merchant(api, tenants):
    response = send(
        api, tenants["operator"], as_csv("order", order_rows(2)), merchant=tenants["merchant"].id
    )

    assert response.status_code == 201, response.json()
    assert set(Order.objects.values_list("merchant_id", flat=True)) == {tenants["merchant"].id}


# --- reading uploads back ------------------------------------------------------------------------


def test_uploads_list_without_errors_and_retrieve_with_them(api, tenants, merchant):
    first = send(api, merchant, as_csv("order", mixed_file())).json()
    second = send(api, merchant, as_jsonl(order_rows(1, start=9)), name="o.jsonl").json()
    send(api, tenants["other_merchant"], as_csv("order", order_rows(1)))

    listed = api.get(URL, key=merchant.key).json()
    detail = api.get(f"{URL}/{first['id']}", key=merchant.key).json()
    rejected_only = api.get(URL, key=merchant.key, params={"status": "partially_accepted"}).json()

    assert [u["id"] for u in listed["data"]] == [second["id"], first["id"]]
    assert all("errors" not in u for u in listed["data"])
    assert detail == first
    assert detail["errors"] == MIXED_ERRORS
    assert [u["id"] for u in rejected_only["data"]] == [first["id"]]
    assert api.get(URL, key=tenants["operator"].key).json()["data"].__len__() == 3
    assert error_of(api.get(URL, key=merchant.key, params={"kind": "x"}))["param"] == "kind"


# --- speed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_hundred_thousand_rows_take_seconds(actor, fmt):
    data = as_csv("order", order_rows(100_000)) if fmt == "csv" else as_jsonl(order_rows(100_000))

    started = time.perf_counter()
    upload = upload_create(actor=actor, kind="order", fmt=fmt, mode="all_or_nothing", data=data)
    seconds = time.perf_counter() - started

    assert (upload.status, upload.rows_accepted) == ("accepted", 100_000)
    assert Order.objects.filter(upload=upload).count() == 100_000
    # Measured at 4 to 8 s on a 2-core machine (docs/trade.md); a generous bound for CI.
    assert seconds < 60, seconds


# --- compressed files and the command ------------------------------------------------------------


def test_a_gzip_file_is_read_as_its_content(api, merchant):
    data = gzip.compress(as_csv("order", order_rows(3)))

    response = send(api, merchant, data, name="orders.csv.gz", format="csv")

    assert (response.status_code, response.json()["rows_accepted"]) == (201, 3)
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_gzip_file_that_unpacks_too_large_or_is_broken_stores_nothing(api, merchant, monkeypatch):
    monkeypatch.setattr(uploads, "BYTES_MAX", 10_000)
    bomb = gzip.compress(b"order_no" + b" " * 1_000_000)
    before = state()

    too_large = send(api, merchant, bomb, format="csv")
    broken = send(api, merchant, gzip.compress(as_csv("order", order_rows(3)))[:-12], format="csv")

    assert too_large.status_code == 413
    assert (broken.status_code, error_of(broken)["code"]) == (400, "upload_invalid")
    assert state() == before


def test_the_command_files_a_file_for_a_merchant(tenants, tmp_path):
    path = tmp_path / "orders.csv"
    path.write_bytes(as_csv("order", order_rows(4)))
    out = io.StringIO()

    call_command(
        "trade_upload", str(path), kind="order", merchant=tenants["merchant"].id, stdout=out
    )

    shown = json.loads(out.getvalue())
    assert (shown["status"], shown["rows_accepted"], shown["merchant"]) == (
        "accepted",
        4,
        tenants["merchant"].id,
    )
    with pytest.raises(CommandError, match="no row was filed"):
        call_command(
            "trade_upload", str(path), kind="order", merchant=tenants["merchant"].id, stdout=out
        )
    with pytest.raises(CommandError, match="merchant_missing"):
        call_command("trade_upload", str(path), kind="order", merchant="par_x", stdout=out)


def test_a_number_filed_meanwhile_by_another_request_refuses_the_file(api, merchant, monkeypatch):
    """The check against stored numbers ran before another request stored one: the database's
    unique constraint catches it, and the whole file is 409 with nothing stored."""
    OrderFactory.create(merchant=merchant.participant, order_no="ORD-0000001")
    monkeypatch.setattr(uploads, "_stored_numbers", lambda *args, **kwargs: {})
    before = state()

    response = send(api, merchant, as_csv("order", order_rows(3)))

    assert (response.status_code, error_of(response)["code"]) == (409, "upload_conflict")
    assert state() == before


def test_a_file_far_over_the_hubs_usual_body_limit_goes_through_the_api(api, merchant):
    """Bulk files may reach 64 MiB; other requests stay within 1 MiB."""
    data = as_csv("order", order_rows(30_000))
    assert len(data) > 2 * 1024 * 1024

    response = api.client.post(
        URL,
        {"file": SimpleUploadedFile("orders.csv", data), "kind": "order"},
        headers={"Authorization": f"Bearer {merchant.key}", "Idempotency-Key": "big-file-1"},
    )

    assert response.status_code == 201, response.content[:300]
    assert (response.json()["rows_accepted"], response.json()["rows_rejected"]) == (30_000, 0)
    assert Order.objects.count() == 30_000
    elsewhere = api.post(
        "/v1/trade/orders", raw=b'{"order_no": "' + b"x" * (1024 * 1024) + b'"}', key=merchant.key
    )
    assert elsewhere.status_code == 413


class _Unread(io.RawIOBase):
    """A request body that fails the test if the server reads any of it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body was read")


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        ("", 401, "invalid_api_key"),
        ("Bearer hk_test_" + "x" * 40, 401, "invalid_api_key"),
        ("Basic dXNlcjpwYXNz", 401, "invalid_authorization_header"),
    ],
)
def test_a_large_body_is_not_read_before_its_caller_authenticates(
    db, merchant, authorization, status, code
):
    """A body over the usual 1 MiB is taken in only from a caller whose key authenticates."""
    from django.test import RequestFactory
    from django.test.client import ClientHandler

    environ = (
        RequestFactory().post(URL, b"", content_type="multipart/form-data; boundary=x").environ
    )
    environ.update(
        {"CONTENT_LENGTH": str(8 * 1024 * 1024), "wsgi.input": _Unread()}, REMOTE_ADDR="127.0.0.1"
    )
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    before = DocumentUpload.objects.count()

    response: Any = ClientHandler()(environ)

    assert response.status_code == status
    assert json.loads(response.content)["error"]["code"] == code
    assert DocumentUpload.objects.count() == before
