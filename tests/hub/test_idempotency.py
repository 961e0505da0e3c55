"""Idempotency-Key on POST: the first response is stored for 24 hours and replayed byte for byte;
another body under the same key is 422; a concurrent duplicate is 409."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from hub.models import Event, IdempotencyRecord, Participant
from hub.sandbox import make_uscc
from hub.services.idempotency import idempotency_begin
from tests.conftest import api_key_of, error_of, needs_postgres, row_counts
from tests.factories import issue_key, principal_for


def onboarding(n: int = 1, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "role": "merchant",
        "legal_name": f"Qingdao Idempotent Goods {n} Co., Ltd.",
        "country": "CN",
        "registration_id": make_uscc("370200", f"MA7D{n:04d}"),
    }
    body.update(fields)
    return body


def test_a_retry_replays_the_stored_response_byte_for_byte(api, tenants):
    op = tenants["operator"]
    first = api.post("/v1/participants", onboarding(), key=op.key, idempotency_key="onb-1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    after_first = row_counts()
    assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.COMPLETED

    again = api.post("/v1/participants", onboarding(), key=op.key, idempotency_key="onb-1")
    assert again.status_code == 201
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"]
    assert again["Idempotent-Replayed"] == "true"
    assert again["Request-Id"] != first["Request-Id"]
    assert row_counts() == after_first
    assert Event.objects.filter(type="participant.created").count() == 1


def test_a_replay_needs_only_the_same_participant_not_the_same_key(api, tenants):
    op = tenants["operator"]
    first = api.post("/v1/participants", onboarding(), key=op.key, idempotency_key="onb-1")
    second_key = issue_key(op.participant)
    again = api.post("/v1/participants", onboarding(), key=second_key, idempotency_key="onb-1")
    assert (again.status_code, again.content) == (201, first.content)
    assert again["Idempotent-Replayed"] == "true"


def test_errors_from_a_request_that_ran_are_replayed_too(api, tenants):
    op = tenants["operator"]
    assert api.post("/v1/participants", onboarding()).status_code == 401  # no key, no record
    assert api.post("/v1/participants", onboarding(), key=op.key).status_code == 201
    first = api.post("/v1/participants", onboarding(), key=op.key, idempotency_key="dup")
    assert first.status_code == 409
    assert error_of(first)["code"] == "participant_exists"
    before = row_counts()
    again = api.post("/v1/participants", onboarding(), key=op.key, idempotency_key="dup")
    assert (again.status_code, again.content) == (409, first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert row_counts() == before


def test_the_same_key_with_another_body_is_422(api, tenants):
    op = tenants["operator"]
    assert (
        api.post("/v1/participants", onboarding(1), key=op.key, idempotency_key="k").status_code
        == 201
    )
    before = row_counts()
    for other in (
        onboarding(2),
        onboarding(1, legal_name="Another name"),
        # The same object with its members in another order is another body: keys name bytes.
        dict(reversed(list(onboarding(1).items()))),
    ):
        response = api.post("/v1/participants", other, key=op.key, idempotency_key="k")
        assert response.status_code == 422
        error = error_of(response)
        assert (error["type"], error["code"], error["param"]) == (
            "idempotency_error",
            "idempotency_key_reused",
            "Idempotency-Key",
        )
    assert row_counts() == before


def test_the_same_key_on_another_endpoint_is_422(api, tenants):
    op = tenants["operator"]
    assert api.post("/v1/participants", {}, key=op.key, idempotency_key="k").status_code == 400
    assert (
        api.post("/v1/participants", onboarding(), key=op.key, idempotency_key="k").status_code
        == 201
    )
    before = row_counts()
    response = api.post(f"/v1/participants/{op.id}/api_keys", {}, key=op.key, idempotency_key="k")
    assert response.status_code == 422
    assert error_of(response)["code"] == "idempotency_key_reused"
    assert row_counts() == before


def test_keys_are_scoped_to_the_participant(api, tenants):
    op, merchant = tenants["operator"], tenants["merchant"]
    first = api.post(
        "/v1/webhook_endpoints",
        {"url": "https://merchant.example/hooks", "enabled_events": ["*"]},
        key=merchant.key,
        idempotency_key="shared",
    )
    assert first.status_code == 201
    # The operator uses the same key string for something else: no 422, no replay.
    response = api.post("/v1/participants", onboarding(), key=op.key, idempotency_key="shared")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    # And the same body by another merchant creates its own endpoint.
    other = api.post(
        "/v1/webhook_endpoints",
        {"url": "https://merchant.example/hooks", "enabled_events": ["*"]},
        key=tenants["other_merchant"].key,
        idempotency_key="shared",
    )
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    assert IdempotencyRecord.objects.filter(key="shared").count() == 3


def test_test_and_live_keys_are_independent(api, tenants):
    merchant = tenants["merchant"]
    live_key = issue_key(merchant.participant, livemode=True)
    body = {"url": "https://merchant.example/hooks", "enabled_events": ["*"]}
    test = api.post("/v1/webhook_endpoints", body, key=merchant.key, idempotency_key="k")
    live = api.post("/v1/webhook_endpoints", body, key=live_key, idempotency_key="k")
    assert (test.status_code, live.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in live
    assert (test.json()["livemode"], live.json()["livemode"]) == (False, True)
    assert sorted(IdempotencyRecord.objects.values_list("livemode", flat=True)) == [False, True]


def test_keys_older_than_24_hours_are_forgotten(api, tenants):
    op = tenants["operator"]
    path = f"/v1/participants/{tenants['merchant'].id}/api_keys"
    first = api.post(path, {"name": "erp"}, key=op.key, idempotency_key="daily")
    assert first.status_code == 201
    record = IdempotencyRecord.objects.get()

    # Just inside the window: still replayed.
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        created_at=timezone.now() - timedelta(hours=23, minutes=59)
    )
    again = api.post(path, {"name": "erp"}, key=op.key, idempotency_key="daily")
    assert (again.status_code, again.content, again["Idempotent-Replayed"]) == (
        201,
        first.content,
        "true",
    )

    IdempotencyRecord.objects.filter(pk=record.pk).update(
        created_at=timezone.now() - timedelta(hours=24, seconds=1)
    )
    keys_before = row_counts()["ApiKey"]
    later = api.post(path, {"name": "erp"}, key=op.key, idempotency_key="daily")
    assert later.status_code == 201
    assert "Idempotent-Replayed" not in later
    assert later.json()["id"] != first.json()["id"]
    assert row_counts()["ApiKey"] == keys_before + 1
    fresh = IdempotencyRecord.objects.get()
    assert fresh.created_at > timezone.now() - timedelta(minutes=1)


def test_a_refused_body_does_not_use_up_the_key(api, tenants):
    op = tenants["operator"]
    before = row_counts()
    bad = api.post(
        "/v1/participants", onboarding(country="JP"), key=op.key, idempotency_key="fix-me"
    )
    assert bad.status_code == 400
    assert error_of(bad)["param"] == "country"
    malformed = api.post("/v1/participants", raw="{", key=op.key, idempotency_key="fix-me")
    assert malformed.status_code == 400
    wrong_type = api.post(
        "/v1/participants",
        raw=json.dumps(onboarding()),
        content_type="text/plain",
        key=op.key,
        idempotency_key="fix-me",
    )
    assert wrong_type.status_code == 415
    assert row_counts() == before

    fixed = api.post("/v1/participants", onboarding(), key=op.key, idempotency_key="fix-me")
    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed
    assert Participant.objects.filter(pk=fixed.json()["id"]).exists()


def test_a_crash_does_not_use_up_the_key(api, tenants, monkeypatch):
    op = tenants["operator"]

    def crash(**kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr("hub.api.views.participants.participant_create", crash)
        response = api.post("/v1/participants", onboarding(), key=op.key, idempotency_key="c")
        assert response.status_code == 500
    assert IdempotencyRecord.objects.count() == 0
    retry = api.post("/v1/participants", onboarding(), key=op.key, idempotency_key="c")
    assert retry.status_code == 201


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "clé-1", "订单-1", "tab\tkey", "new\nline"],
    ids=["empty", "too-long", "latin", "cjk", "tab", "newline"],
)
def test_invalid_keys_are_400(api, tenants, key):
    before = row_counts()
    response = api.post(
        "/v1/participants", onboarding(), key=tenants["operator"].key, idempotency_key=key
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("idempotency_key_invalid", "Idempotency-Key")
    assert row_counts() == before


def test_the_longest_valid_key_is_accepted(api, tenants):
    response = api.post(
        "/v1/participants", onboarding(), key=tenants["operator"].key, idempotency_key="k" * 255
    )
    assert response.status_code == 201
    assert IdempotencyRecord.objects.get().key == "k" * 255


def test_a_request_still_running_is_409(api, tenants):
    op = tenants["operator"]
    body = json.dumps(onboarding()).encode()
    # Another process has claimed this key for the same request and not finished it.
    actor = principal_for(op.participant)
    idempotency_begin(actor=actor, key="busy", method="POST", path="/v1/participants", body=body)
    before = row_counts()
    response = api.post("/v1/participants", raw=body, key=op.key, idempotency_key="busy")
    assert response.status_code == 409
    error = error_of(response)
    assert (error["type"], error["code"]) == ("idempotency_error", "idempotency_key_in_use")
    assert row_counts() == before


def test_requests_without_a_key_are_not_deduplicated(api, tenants):
    op = tenants["operator"]
    path = f"/v1/participants/{tenants['bank'].id}/api_keys"
    first, second = api.post(path, {}, key=op.key), api.post(path, {}, key=op.key)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert IdempotencyRecord.objects.count() == 0


def test_the_key_is_ignored_on_reads(api, tenants):
    op = tenants["operator"]
    response = api.get("/v1/participants", key=op.key, **{"Idempotency-Key": "x" * 300})
    assert response.status_code == 200
    assert IdempotencyRecord.objects.count() == 0


@needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("threads", [2, 6])
def test_concurrent_duplicates_create_one_participant(tenants, threads):
    op = tenants["operator"]
    body = json.dumps(onboarding())
    barrier = threading.Barrier(threads)
    results: list[tuple[int, bytes, str | None]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def send() -> None:
        try:
            client = Client()
            barrier.wait(timeout=30)
            response = client.post(
                "/v1/participants",
                body,
                content_type="application/json",
                headers={"Authorization": f"Bearer {op.key}", "Idempotency-Key": "race"},
            )
            with lock:
                results.append(
                    (
                        response.status_code,
                        response.content,
                        response.get("Idempotent-Replayed"),
                    )
                )
        except BaseException as exc:  # reported to the main thread below
            failures.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not failures, failures
    assert len(results) == threads

    created = [r for r in results if r[0] == 201 and r[2] is None]
    assert len(created) == 1, results
    participant_id = json.loads(created[0][1])["id"]
    for status, content, replayed in results:
        if (status, replayed) == (201, "true"):
            assert content == created[0][1]
        elif status != 201:
            assert status == 409, content
            assert json.loads(content)["error"]["code"] == "idempotency_key_in_use"
    assert Participant.objects.filter(legal_name=onboarding()["legal_name"]).count() == 1
    assert Participant.objects.filter(pk=participant_id).exists()
    assert Event.objects.filter(type="participant.created").count() == 1
    assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.COMPLETED
    assert api_key_of(op.key).revoked_at is None
