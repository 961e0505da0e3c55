"""The API conventions every endpoint shares: request ids, the error object, strict JSON bodies,
lists and cursors, the OpenAPI document and docs, and the audit trail of writes."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import URLPattern, get_resolver
from django.utils import timezone
from drf_spectacular.validation import validate_schema

from hub import ids
from hub.api.base import HubAPIView
from hub.ids import is_valid_id
from hub.models import AuditEntry, Participant
from hub.sandbox import make_uscc
from tests.conftest import api_key_of, error_of, row_counts

MIB = 1024 * 1024


def new_participant_body(n: int = 1, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "role": "merchant",
        "legal_name": f"Weihai Conventions Trading {n} Co., Ltd.",
        "country": "CN",
        "registration_id": make_uscc("371002", f"MA9C{n:04d}"),
    }
    body.update(fields)
    return body


def v1_patterns() -> list[tuple[str, URLPattern]]:
    """(OpenAPI-style path, pattern) for every route of hub.urls."""
    result = []
    for pattern in get_resolver().url_patterns:
        assert isinstance(pattern, URLPattern)
        route = str(pattern.pattern).removeprefix("^").removesuffix("$")
        result.append(("/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route), pattern))
    return result


# Request-Id and the error object


def test_every_response_carries_a_distinct_request_id(api, tenants):
    op = tenants["operator"]
    responses = [
        api.get("/v1/health"),
        api.get("/v1/me", key=op.key),
        api.get("/v1/me"),
        api.post("/v1/participants", new_participant_body(), key=op.key),
        api.post("/v1/participants", {"bogus": 1}, key=op.key),
        api.post("/v1/participants", {}, key=tenants["merchant"].key),
        api.get("/v1/no_such_thing", key=op.key),
        api.client.delete("/v1/participants", headers={"Authorization": f"Bearer {op.key}"}),
        api.post("/v1/participants", raw=b"{" + b" " * MIB + b"}", key=op.key),
        api.post("/v1/participants", raw="x", content_type="text/plain", key=op.key),
        api.get("/v1/openapi.json"),
        api.get("/v1/docs"),
        api.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"),
    ]
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 401, 201, 400, 403, 404, 405, 413, 415, 200, 200, 200]
    request_ids = [r["Request-Id"] for r in responses]
    assert all(is_valid_id("req", rid) for rid in request_ids), request_ids
    assert len(set(request_ids)) == len(request_ids)
    for response in responses:
        if response.status_code >= 400:
            assert error_of(response)["request_id"] == response["Request-Id"]


@pytest.mark.parametrize(
    ("raw", "message_part"),
    [
        ("{", "not valid JSON"),
        ('{"role": "merchant",}', "not valid JSON"),
        ("{'role': 'merchant'}", "not valid JSON"),
        ('{"legal_name": NaN}', "not valid JSON"),
        ('{"legal_name": Infinity}', "not valid JSON"),
        (b'{"legal_name": "\xff"}', "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('[{"role": "merchant"}]', "must be a JSON object"),
        ('"merchant"', "must be a JSON object"),
        ("null", "must be a JSON object"),
        ("42", "must be a JSON object"),
        ('{"legal_name": "a", "legal_name": "b"}', "duplicate key"),
        ('{"metadata": {"k": "1", "k": "2"}}', "duplicate key"),
    ],
    ids=[
        "truncated",
        "trailing-comma",
        "single-quotes",
        "nan",
        "infinity",
        "not-utf8",
        "too-deep",
        "empty-array",
        "array",
        "string",
        "null",
        "number",
        "duplicate-key",
        "nested-duplicate-key",
    ],
)
def test_bodies_that_are_not_one_json_object_are_refused(api, tenants, raw, message_part):
    before = row_counts()
    response = api.post("/v1/participants", raw=raw, key=tenants["operator"].key)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_json",
        None,
    )
    assert message_part in error["message"]
    assert row_counts() == before


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/participants", new_participant_body(legal_name=123), "legal_name"),
        ("/v1/participants", new_participant_body(legal_name=1.5), "legal_name"),
        ("/v1/participants", new_participant_body(legal_name=["x"]), "legal_name"),
        ("/v1/participants", new_participant_body(legal_name={"en": "x"}), "legal_name"),
        ("/v1/participants", new_participant_body(role=True), "role"),
        ("/v1/participants", new_participant_body(role=["merchant"]), "role"),
        ("/v1/participants", new_participant_body(registration_id=91440300), "registration_id"),
        ("/v1/participants", new_participant_body(metadata="x"), "metadata"),
        ("/v1/participants", new_participant_body(metadata={"k": 1}), "metadata.k"),
        ("/v1/participants", new_participant_body(metadata=["k"]), "metadata"),
        ("/v1/participants/{self}/api_keys", {"scopes": "events:read"}, "scopes"),
        ("/v1/participants/{self}/api_keys", {"scopes": ["events:read", 1]}, "scopes.1"),
        ("/v1/participants/{self}/api_keys", {"name": 7}, "name"),
        ("/v1/api_keys/{key}/rotate", {"expires_in": "soon"}, "expires_in"),
        ("/v1/api_keys/{key}/rotate", {"expires_in": "60"}, "expires_in"),
        ("/v1/api_keys/{key}/rotate", {"expires_in": True}, "expires_in"),
        ("/v1/api_keys/{key}/rotate", {"expires_in": 1.5}, "expires_in"),
        ("/v1/api_keys/{key}/rotate", {"expires_in": [60]}, "expires_in"),
    ],
)
def test_wrong_types_are_400_naming_the_parameter(api, tenants, path, body, param):
    op = tenants["operator"]
    path = path.format(self=op.id, key=api_key_of(op.key).pk)
    before = row_counts()
    response = api.post(path, body, key=op.key)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert (error["code"], error["param"]) == (
        "metadata_invalid" if param.startswith("metadata.") else "parameter_invalid",
        param,
    )
    assert row_counts() == before


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/participants", new_participant_body(livemode=True), "livemode"),
        ("/v1/participants", new_participant_body(status="active"), "status"),
        ("/v1/participants", new_participant_body(legalName="x"), "legalName"),
        ("/v1/participants/{self}", {"role": "bank"}, "role"),
        ("/v1/participants/{self}", {"registration_id": "x"}, "registration_id"),
        ("/v1/participants/{self}/api_keys", {"livemode": True}, "livemode"),
        ("/v1/api_keys/{key}/revoke", {"reason": "lost"}, "reason"),
        ("/v1/api_keys/{key}/rotate", {"expires_at": 0}, "expires_at"),
    ],
)
def test_unknown_fields_on_a_write_are_refused(api, tenants, path, body, param):
    op = tenants["operator"]
    path = path.format(self=op.id, key=api_key_of(op.key).pk)
    before = row_counts()
    response = api.post(path, body, key=op.key)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("parameter_unknown", param)
    assert api_key_of(op.key).revoked_at is None
    assert row_counts() == before


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"legal_name": "Weihai\x00Trading"}, "parameter_invalid", "legal_name"),
        ({"metadata": {"ref": "a\x00b"}}, "metadata_invalid", "metadata.ref"),
        ({"metadata": {"r\x00f": "ab"}}, "metadata_invalid", "metadata.r\x00f"),
    ],
)
def test_nul_characters_are_400_not_a_database_error(api, tenants, fields, code, param):
    # PostgreSQL cannot store NUL in text or jsonb: refused as input, never a 500.
    before = row_counts()
    response = api.post(
        "/v1/participants", new_participant_body(**fields), key=tenants["operator"].key
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param)
    assert row_counts() == before


def test_missing_required_field_names_it(api, tenants):
    before = row_counts()
    body = new_participant_body()
    del body["country"]
    response = api.post("/v1/participants", body, key=tenants["operator"].key)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"], error["message"]) == (
        "parameter_missing",
        "country",
        "country is required.",
    )
    assert row_counts() == before


def test_a_body_over_one_mib_is_413_and_writes_nothing(api, tenants):
    op = tenants["operator"]
    before, audit_before = row_counts(), AuditEntry.objects.count()
    body = new_participant_body(metadata={"pad": "x" * 500})
    raw = json.dumps(body)
    raw = raw[:-1] + ', "padding": "' + "x" * MIB + '"}'
    response = api.post("/v1/participants", raw=raw, key=op.key, idempotency_key="big-1")
    assert response.status_code == 413
    error = error_of(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "payload_too_large")
    assert row_counts() == before
    assert AuditEntry.objects.count() == audit_before


def test_a_body_of_exactly_one_mib_is_parsed(api, tenants):
    body = json.dumps({"padding": ""})
    raw = body[:-2] + "x" * (MIB - len(body)) + '"}'
    assert len(raw.encode()) == MIB
    response = api.post("/v1/participants", raw=raw, key=tenants["operator"].key)
    # Accepted past the size gate, then refused for its content.
    assert response.status_code == 400
    assert error_of(response)["code"] == "parameter_unknown"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=b",
        "application/xml",
    ],
)
def test_wrong_content_type_is_415(api, tenants, content_type):
    before = row_counts()
    response = api.post(
        "/v1/participants",
        raw=json.dumps(new_participant_body()),
        content_type=content_type,
        key=tenants["operator"].key,
        idempotency_key="ct-1",
    )
    assert response.status_code == 415
    error = error_of(response)
    assert error["code"] == "unsupported_media_type"
    assert row_counts() == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/no_such_thing",
        "/v1/participants/",
        "/v1/participants/not-an-id",
        "/v2/participants",
        "/",
        "/admin/",
        "/static/no/such/file.js",
    ],
)
def test_unknown_urls_are_json_404(api, tenants, path):
    for key in (tenants["merchant"].key, None):
        response = api.get(path, key=key)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert not response.content.lstrip().startswith(b"<")
        error = error_of(response)
        assert (error["type"], error["code"]) == ("invalid_request_error", "endpoint_missing")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/v1/participants"),
        ("put", "/v1/participants"),
        ("patch", "/v1/participants/{self}"),
        ("delete", "/v1/participants/{self}"),
        ("post", "/v1/me"),
        ("post", "/v1/events"),
        ("get", "/v1/api_keys/{key}/revoke"),
        ("get", "/v1/api_keys/{key}/rotate"),
    ],
)
def test_wrong_method_is_405_error_object(api, tenants, method, path):
    op = tenants["operator"]
    before = row_counts()
    path = path.format(self=op.id, key=api_key_of(op.key).pk)
    response = getattr(api.client, method)(
        path, content_type="application/json", headers={"Authorization": f"Bearer {op.key}"}
    )
    assert response.status_code == 405
    error = error_of(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "method_not_allowed")
    assert method.upper() in error["message"]
    assert row_counts() == before


def test_an_unexpected_failure_is_a_500_error_object_without_internals(api, tenants, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("password=hunter2 in a stack frame")

    monkeypatch.setattr("hub.api.views.participants.participants_visible", explode)
    response = api.get("/v1/participants", key=tenants["operator"].key)
    assert response.status_code == 500
    error = error_of(response)
    assert (error["type"], error["code"]) == ("api_error", "internal_error")
    assert b"hunter2" not in response.content
    assert b"Traceback" not in response.content


# Lists and cursors


class TickingClock:
    """hub.ids' clock, one millisecond further at every id, so that objects made one after the
    other get strictly increasing ids (ids made within one millisecond are not ordered)."""

    def __init__(self) -> None:
        self.ms = int(timezone.now().timestamp() * 1000) + 1000

    def time_ns(self) -> int:
        self.ms += 1
        return self.ms * 1_000_000


def walk(api, key, **params):
    """Pages of GET /v1/participants following the cursor in ``params``' direction."""
    pages = []
    while True:
        response = api.get("/v1/participants", key=key, params=params)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"object", "data", "has_more", "url"}
        assert (body["object"], body["url"]) == ("list", "/v1/participants")
        pages.append([p["id"] for p in body["data"]])
        if not body["has_more"]:
            return pages
        if "ending_before" in params:
            params = {**params, "ending_before": pages[-1][0]}
        else:
            params = {**params, "starting_after": pages[-1][-1]}


def test_pagination_walks_every_participant_once_newest_first(api, tenants, monkeypatch):
    op = tenants["operator"]
    monkeypatch.setattr(ids, "time", TickingClock())
    created = []
    for n in range(25):
        response = api.post("/v1/participants", new_participant_body(n), key=op.key)
        assert response.status_code == 201, response.content
        created.append(response.json()["id"])
    everyone = sorted(Participant.objects.values_list("pk", flat=True), reverse=True)
    assert len(everyone) == 25 + len(tenants)
    assert everyone[:25] == created[::-1]  # newest first is the order of creation, reversed

    pages = walk(api, op.key, limit=10)
    assert [len(page) for page in pages] == [10, 10, 10, 3]
    assert [pid for page in pages for pid in page] == everyone

    oldest = everyone[-1]
    back = walk(api, op.key, limit=10, ending_before=oldest)
    assert [len(page) for page in back] == [10, 10, 10, 2]
    assert [pid for page in reversed(back) for pid in page] + [oldest] == everyone


def test_default_page_size_and_the_middle_of_the_list(api, tenants):
    op = tenants["operator"]
    everyone = sorted(Participant.objects.values_list("pk", flat=True), reverse=True)
    body = api.get("/v1/participants", key=op.key).json()
    assert ([p["id"] for p in body["data"]], body["has_more"]) == (everyone[:10], False)
    body = api.get(
        "/v1/participants", key=op.key, params={"limit": 3, "starting_after": everyone[2]}
    ).json()
    assert ([p["id"] for p in body["data"]], body["has_more"]) == (everyone[3:6], True)
    body = api.get(
        "/v1/participants", key=op.key, params={"limit": 3, "ending_before": everyone[4]}
    ).json()
    assert ([p["id"] for p in body["data"]], body["has_more"]) == (everyone[1:4], True)
    body = api.get(
        "/v1/participants", key=op.key, params={"limit": 100, "starting_after": everyone[-1]}
    ).json()
    assert (body["data"], body["has_more"]) == ([], False)


def test_list_query_budget(api, tenants, django_assert_max_num_queries):
    op = tenants["operator"]
    api.get("/v1/participants", key=op.key)  # the key's last_used_at is now fresh
    with django_assert_max_num_queries(2):  # the key, the page
        response = api.get("/v1/participants", key=op.key, params={"limit": 100})
    assert len(response.json()["data"]) == len(tenants)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": "²"}, "limit"),
        ({"limit": "\uff11\uff10"}, "limit"),  # full-width 10
        ({"starting_after": "par_x", "ending_before": "par_y"}, "ending_before"),
        ({"starting_after": ""}, "starting_after"),
        ({"starting_after": "../etc"}, "starting_after"),
        ({"ending_before": "par_" + "x" * 40}, "ending_before"),
    ],
)
def test_bad_list_parameters_are_400(api, tenants, params, param):
    response = api.get("/v1/participants", key=tenants["operator"].key, params=params)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("parameter_invalid", param)


# The OpenAPI document and the docs


def test_openapi_document_is_valid_json_with_every_endpoint(api):
    response = api.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/")
    assert "json" in response["Content-Type"]
    document = json.loads(response.content)
    validate_schema(document)
    assert document["openapi"].startswith("3.")

    documented = document["paths"]
    expected = {}
    for path, pattern in v1_patterns():
        view = pattern.callback.view_class  # type: ignore[attr-defined]
        if issubclass(view, HubAPIView):
            expected[path] = {m.lower() for m in view.access}
    assert set(documented) == set(expected)
    for path, methods in expected.items():
        assert set(documented[path]) == methods, path


def test_openapi_request_bodies_match_each_view_input(api):
    """Every view names its input serializer ``Input``: each operation must still document its
    own fields, not another view's."""
    document = json.loads(api.get("/v1/openapi.json").content)
    components = document["components"]["schemas"]
    checked = 0
    for path, pattern in v1_patterns():
        view = pattern.callback.view_class  # type: ignore[attr-defined]
        if not issubclass(view, HubAPIView) or "POST" not in view.access:
            continue
        if not hasattr(view, "Input"):
            continue  # an input serializer by another name documents itself under that name
        operation = document["paths"][path]["post"]
        fields = set(view.Input().fields)
        if "requestBody" not in operation:
            assert fields == set(), path
            continue
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = components[ref.rsplit("/", 1)[1]]
        assert set(schema.get("properties", {})) == fields, path
        checked += 1
    assert checked >= 6


def test_docs_are_html_served_offline(api):
    response = api.get("/v1/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert '"/v1/openapi.json"' in html
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert references, html
    assert all(ref.startswith("/static/") for ref in references), references
    for ref in references:
        asset = api.get(ref)
        assert asset.status_code == 200, ref
        assert b"".join(asset.streaming_content)


# The audit trail


def audit_rows():
    return list(AuditEntry.objects.order_by("pk"))


def test_every_write_is_audited_with_who_what_when_where(api, tenants):
    op = tenants["operator"]
    key = api_key_of(op.key)
    before = timezone.now()
    response = api.client.post(
        "/v1/participants",
        json.dumps(new_participant_body()),
        content_type="application/json",
        headers={
            "Authorization": f"Bearer {op.key}",
            "Idempotency-Key": "audit-1",
            "User-Agent": "bank-erp/2.1",
        },
        REMOTE_ADDR="203.0.113.7",
    )
    after = timezone.now()
    assert response.status_code == 201
    [row] = audit_rows()
    assert (
        row.participant_id,
        row.api_key_id,
        row.livemode,
        row.method,
        row.path,
        row.object_id,
        row.status_code,
        row.ip_address,
        row.user_agent,
        row.idempotency_key,
        row.request_id,
    ) == (
        op.id,
        key.pk,
        False,
        "POST",
        "/v1/participants",
        response.json()["id"],
        201,
        "203.0.113.7",
        "bank-erp/2.1",
        "audit-1",
        response["Request-Id"],
    )
    assert before <= row.created_at <= after


def test_failed_writes_by_authenticated_callers_are_audited(api, tenants):
    op, merchant = tenants["operator"], tenants["merchant"]
    other_key = api_key_of(tenants["other_merchant"].key)
    attempts = [
        (op, "/v1/participants", {"bogus": 1}, 400),
        (op, "/v1/participants", new_participant_body(registration_id="91440300708461136X"), 400),
        (merchant, "/v1/participants", new_participant_body(), 403),
        (merchant, f"/v1/api_keys/{other_key.pk}/revoke", {}, 404),
        (op, f"/v1/participants/{op.id}", {"status": "suspended"}, 409),
    ]
    responses = []
    for tenant, path, body, status in attempts:
        response = api.post(path, body, key=tenant.key)
        assert response.status_code == status, response.content
        responses.append(response)
    rows = audit_rows()
    assert [
        (r.participant_id, r.api_key_id, r.method, r.path, r.status_code, r.request_id)
        for r in rows
    ] == [
        (t.id, api_key_of(t.key).pk, "POST", path, status, resp["Request-Id"])
        for (t, path, _, status), resp in zip(attempts, responses, strict=True)
    ]
    assert all(r.ip_address == "127.0.0.1" and r.object_id == "" for r in rows)


def test_reads_and_anonymous_writes_are_not_audited(api, tenants):
    op = tenants["operator"]
    for path in ("/v1/me", "/v1/participants", f"/v1/participants/{op.id}", "/v1/events"):
        assert api.get(path, key=op.key).status_code == 200
    assert api.post("/v1/participants", new_participant_body()).status_code == 401
    assert (
        api.post("/v1/participants", new_participant_body(), key="hk_test_nope").status_code == 401
    )
    assert audit_rows() == []


def test_replayed_writes_are_audited_under_their_own_request_id(api, tenants):
    op = tenants["operator"]
    first = api.post("/v1/participants", new_participant_body(), key=op.key, idempotency_key="a")
    again = api.post("/v1/participants", new_participant_body(), key=op.key, idempotency_key="a")
    assert (first.status_code, again.status_code) == (201, 201)
    assert [(r.request_id, r.object_id, r.idempotency_key) for r in audit_rows()] == [
        (first["Request-Id"], first.json()["id"], "a"),
        (again["Request-Id"], first.json()["id"], "a"),
    ]


def test_participants_read_their_own_audit_trail(api, tenants):
    op, merchant = tenants["operator"], tenants["merchant"]
    own = api.post(f"/v1/api_keys/{api_key_of(merchant.key).pk}/rotate", {}, key=merchant.key)
    assert own.status_code == 201
    assert api.post("/v1/participants", new_participant_body(), key=op.key).status_code == 201
    body = api.get("/v1/audit_entries", key=merchant.key).json()
    assert [(e["participant"], e["request_id"]) for e in body["data"]] == [
        (merchant.id, own["Request-Id"])
    ]
    body = api.get("/v1/audit_entries", key=op.key).json()
    assert [e["participant"] for e in body["data"]] == [op.id, merchant.id]
