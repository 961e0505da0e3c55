"""Participants: onboarded by the operator, validated by registration id, suspended and closed;
each non-operator sees only itself."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from hub.models import Event, Participant
from hub.registration import is_valid_registration_id
from hub.sandbox import make_brn, make_uscc
from tests.conftest import error_of, needs_postgres, row_counts
from tests.factories import issue_key
from tests.hub.test_registration import full_width

TENCENT = "9144030071526726XG"
NAVER = "2208162517"


def onboarding(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "role": "merchant",
        "legal_name": "Shenzhen Tencent Computer Systems Co., Ltd.",
        "country": "CN",
        "registration_id": TENCENT,
        "metadata": {"crm_id": "C-1001"},
    }
    body.update(fields)
    return body


def test_operator_onboards_a_participant(api, tenants):
    op = tenants["operator"]
    response = api.post("/v1/participants", onboarding(), key=op.key)
    assert response.status_code == 201
    body = response.json()
    participant_id = body.pop("id")
    created_at = body.pop("created_at")
    assert body == {
        "object": "participant",
        "role": "merchant",
        "legal_name": "Shenzhen Tencent Computer Systems Co., Ltd.",
        "country": "CN",
        "registration_id": TENCENT,
        "status": "active",
        "metadata": {"crm_id": "C-1001"},
    }
    assert created_at.endswith("Z")
    stored = Participant.objects.get(pk=participant_id)
    assert (stored.role, stored.registration_id, stored.status) == ("merchant", TENCENT, "active")

    [event] = Event.objects.filter(participant=stored)
    assert (event.type, event.livemode, event.request_id) == (
        "participant.created",
        False,
        response["Request-Id"],
    )
    assert event.data == {
        "id": participant_id,
        "role": "merchant",
        "legal_name": "Shenzhen Tencent Computer Systems Co., Ltd.",
        "country": "CN",
        "registration_id": TENCENT,
        "status": "active",
    }
    assert api.get(f"/v1/participants/{participant_id}", key=op.key).json()["id"] == participant_id


def test_the_event_is_written_in_the_same_transaction(api, tenants, monkeypatch):
    def event_store_down(**kwargs):
        raise RuntimeError("event table unavailable")

    monkeypatch.setattr("hub.services.participants.event_emit", event_store_down)
    before = row_counts()
    response = api.post("/v1/participants", onboarding(), key=tenants["operator"].key)
    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"
    assert row_counts() == before
    assert not Participant.objects.filter(registration_id=TENCENT).exists()


@pytest.mark.parametrize(
    ("country", "typed", "stored"),
    [
        ("CN", "91440300708461136T", "91440300708461136T"),
        ("CN", "9144030071526726xg", TENCENT),
        ("CN", "91350100M000100Y43", "91350100M000100Y43"),
        ("KR", "220-81-62517", NAVER),
        ("KR", "124 81 00998", "1248100998"),
        ("KR", full_width("220-81-62517"), NAVER),
    ],
)
def test_registration_ids_are_stored_normalised(api, tenants, country, typed, stored):
    response = api.post(
        "/v1/participants",
        onboarding(country=country, registration_id=typed),
        key=tenants["operator"].key,
    )
    assert response.status_code == 201, response.content
    assert response.json()["registration_id"] == stored


@pytest.mark.parametrize(
    ("country", "registration_id"),
    [
        ("CN", "9144030071526726XA"),  # wrong check character
        ("CN", "9144030071526726X"),  # 17 characters
        ("CN", "91440300715267260G"),  # organisation code check broken
        ("CN", "1248100998"),  # a Korean number for a Chinese company
        ("KR", "2208162518"),
        ("KR", "220816251"),
        ("KR", TENCENT),
        ("KR", "22O8162517"),  # letter O for zero
        ("CN", ""),
    ],
)
def test_invalid_registration_id_is_400(api, tenants, country, registration_id):
    before = row_counts()
    response = api.post(
        "/v1/participants",
        onboarding(country=country, registration_id=registration_id),
        key=tenants["operator"].key,
    )
    assert response.status_code == 400
    error = error_of(response)
    expected = "parameter_missing" if registration_id == "" else "registration_id_invalid"
    assert (error["code"], error["param"]) == (expected, "registration_id")
    assert row_counts() == before


@pytest.mark.parametrize(
    "duplicate",
    [TENCENT, "9144030071526726xg", "91440300-71526726-XG"],
)
def test_a_registered_company_cannot_be_onboarded_twice(api, tenants, duplicate):
    op = tenants["operator"]
    assert api.post("/v1/participants", onboarding(), key=op.key).status_code == 201
    before = row_counts()
    response = api.post(
        "/v1/participants",
        onboarding(registration_id=duplicate, role="bank", legal_name="Someone else"),
        key=op.key,
    )
    assert response.status_code == 409
    error = error_of(response)
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "participant_exists",
        "registration_id",
    )
    assert row_counts() == before


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("country", "JP", "parameter_invalid"),
        ("country", "cn", "parameter_invalid"),
        ("country", "", "parameter_invalid"),
        ("role", "admin", "parameter_invalid"),
        ("role", "Merchant", "parameter_invalid"),
        ("role", None, "parameter_missing"),
        ("legal_name", "", "parameter_missing"),
        ("legal_name", "x" * 201, "parameter_invalid"),
        ("registration_id", "9" * 41, "parameter_invalid"),
        ("metadata", {f"k{i}": "v" for i in range(51)}, "metadata_too_large"),
        ("metadata", {"k": "v" * 501}, "metadata_invalid"),
    ],
)
def test_field_validation(api, tenants, field, value, code):
    before = row_counts()
    response = api.post(
        "/v1/participants", onboarding(**{field: value}), key=tenants["operator"].key
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == (
        code,
        "metadata.k" if code == "metadata_invalid" else field,
    )
    assert row_counts() == before


@pytest.mark.parametrize(
    "role", ["merchant", "payment_institution", "bank", "insurer", "regulator"]
)
def test_only_the_operator_onboards(api, tenants, role):
    before = row_counts()
    response = api.post("/v1/participants", onboarding(), key=tenants[role].key)
    assert response.status_code == 403
    assert error_of(response)["code"] == "role_forbidden"
    assert row_counts() == before


def test_suspension_locks_the_participants_keys_out(api, tenants):
    op, merchant = tenants["operator"], tenants["merchant"]
    second_key = issue_key(merchant.participant)
    response = api.post(f"/v1/participants/{merchant.id}", {"status": "suspended"}, key=op.key)
    assert response.status_code == 200
    assert response.json()["status"] == "suspended"
    event = Event.objects.get(type="participant.updated")
    assert (event.participant_id, event.data["status"], event.request_id) == (
        merchant.id,
        "suspended",
        response["Request-Id"],
    )

    before = row_counts()
    for key in (merchant.key, second_key):
        for call in (
            lambda k: api.get("/v1/me", key=k),
            lambda k: api.get(f"/v1/participants/{merchant.id}", key=k),
            lambda k: api.post(
                "/v1/webhook_endpoints",
                {"url": "https://m.example/h", "enabled_events": ["*"]},
                key=k,
            ),
        ):
            refused = call(key)
            assert refused.status_code == 403
            error = error_of(refused)
            assert (error["type"], error["code"]) == ("permission_error", "participant_inactive")
    assert row_counts() == before
    # Other participants are untouched.
    assert api.get("/v1/me", key=tenants["other_merchant"].key).status_code == 200

    # The operator cannot issue keys to a suspended participant either.
    refused = api.post(f"/v1/participants/{merchant.id}/api_keys", {}, key=op.key)
    assert refused.status_code == 409
    assert error_of(refused)["code"] == "participant_inactive"
    assert row_counts() == before

    # Reactivated, the same keys work again.
    assert (
        api.post(f"/v1/participants/{merchant.id}", {"status": "active"}, key=op.key).status_code
        == 200
    )
    assert api.get("/v1/me", key=merchant.key).status_code == 200


def test_updates_change_only_what_is_sent(api, tenants):
    op, bank = tenants["operator"], tenants["bank"]
    response = api.post(
        f"/v1/participants/{bank.id}",
        {"legal_name": "Shandong Weihai Commercial Bank", "metadata": {"swift": "WHCBCNBN"}},
        key=op.key,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["legal_name"], body["metadata"], body["status"], body["role"]) == (
        "Shandong Weihai Commercial Bank",
        {"swift": "WHCBCNBN"},
        "active",
        "bank",
    )
    bank.participant.refresh_from_db()
    assert bank.participant.legal_name == "Shandong Weihai Commercial Bank"


def test_a_closed_participant_cannot_change(api, tenants):
    op, insurer = tenants["operator"], tenants["insurer"]
    assert (
        api.post(f"/v1/participants/{insurer.id}", {"status": "closed"}, key=op.key).status_code
        == 200
    )
    before = row_counts()
    response = api.post(f"/v1/participants/{insurer.id}", {"status": "active"}, key=op.key)
    assert response.status_code == 409
    assert error_of(response)["code"] == "participant_closed"
    insurer.participant.refresh_from_db()
    assert insurer.participant.status == "closed"
    assert row_counts() == before


def test_the_operator_cannot_suspend_itself(api, tenants):
    op = tenants["operator"]
    before = row_counts()
    for status in ("suspended", "closed"):
        response = api.post(f"/v1/participants/{op.id}", {"status": status}, key=op.key)
        assert response.status_code == 409
        assert error_of(response)["code"] == "participant_self"
    op.participant.refresh_from_db()
    assert op.participant.status == "active"
    assert row_counts() == before


def test_unknown_status_is_400(api, tenants):
    before = row_counts()
    response = api.post(
        f"/v1/participants/{tenants['bank'].id}", {"status": "deleted"}, key=tenants["operator"].key
    )
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["param"]) == (
        "parameter_invalid",
        "status",
    )
    assert row_counts() == before


def test_updating_a_missing_participant_is_404(api, tenants):
    before = row_counts()
    response = api.post(
        "/v1/participants/par_00000000000000000000000000",
        {"legal_name": "x"},
        key=tenants["operator"].key,
    )
    assert response.status_code == 404
    assert error_of(response)["code"] == "resource_missing"
    assert row_counts() == before


@pytest.mark.parametrize(
    "role", ["merchant", "payment_institution", "bank", "insurer", "regulator"]
)
def test_a_non_operator_sees_only_itself(api, tenants, role):
    me = tenants[role]
    body = api.get("/v1/participants", key=me.key).json()
    assert [p["id"] for p in body["data"]] == [me.id]
    assert body["has_more"] is False
    assert api.get(f"/v1/participants/{me.id}", key=me.key).json()["id"] == me.id
    for other in ("other_merchant", "operator", "other_bank"):
        response = api.get(f"/v1/participants/{tenants[other].id}", key=me.key)
        assert response.status_code == 404
        assert error_of(response)["code"] == "resource_missing"


def test_the_operator_sees_everyone(api, tenants):
    body = api.get("/v1/participants", key=tenants["operator"].key, params={"limit": 100}).json()
    assert sorted(p["id"] for p in body["data"]) == sorted(t.id for t in tenants.values())


def test_a_missing_id_and_another_tenants_id_look_the_same(api, tenants):
    merchant = tenants["merchant"]
    missing = api.get("/v1/participants/par_00000000000000000000000000", key=merchant.key)
    foreign = api.get(f"/v1/participants/{tenants['other_merchant'].id}", key=merchant.key)
    assert (missing.status_code, foreign.status_code) == (404, 404)

    def without_request_id(response):
        return {k: v for k, v in error_of(response).items() if k != "request_id"}

    assert without_request_id(missing) == without_request_id(foreign)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_onboarding_of_one_company_creates_it_once(tenants):
    op = tenants["operator"]
    threads = 4
    barrier = threading.Barrier(threads)
    statuses: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            response = Client().post(
                "/v1/participants",
                json.dumps(onboarding(legal_name=f"Attempt {n}")),
                content_type="application/json",
                headers={"Authorization": f"Bearer {op.key}"},
            )
            code = response.json().get("error", {}).get("code")
            with lock:
                statuses.append((response.status_code, code))
        finally:
            connection.close()

    workers = [threading.Thread(target=send, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(statuses, key=str) == [(201, None)] + [(409, "participant_exists")] * (
        threads - 1
    )
    assert Participant.objects.filter(registration_id=TENCENT).count() == 1
    assert Event.objects.filter(type="participant.created").count() == 1


def test_factories_make_valid_registration_ids():
    # The helpers the sandbox and the factories use compute real check characters.
    assert is_valid_registration_id("CN", make_uscc("371002", "MA3CBX02"))
    assert is_valid_registration_id("KR", make_brn("131860001"))
