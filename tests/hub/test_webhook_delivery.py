"""Webhook deliveries: claim, send, record and retry on the schedule, in-process against a real
loopback receiver; then end to end with a real Celery worker process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

import hub.services.webhooks as webhooks_module
from hub.models import Event, Participant, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from hub.services.events import event_emit
from hub.services.webhooks import (
    GONE_REASON,
    LEASE_SECONDS,
    LOST_ATTEMPT_ERROR,
    event_dispatch,
    webhook_attempt,
    webhook_endpoint_create,
    webhook_sweep,
)
from tests.conftest import Api, Tenant, error_of
from tests.factories import principal_for
from tests.support.standard_webhooks import matching_signatures
from tests.support.worker import wait_until


def emit(owner: Participant, type: str = "participant.updated") -> Event:
    with transaction.atomic():
        return event_emit(type=type, owner=owner, livemode=False, data={"id": owner.pk})


def dispatch_pending() -> None:
    """Fan out every event still waiting, as the worker would have after commit."""
    for event_id in Event.objects.filter(dispatched_at=None).values_list("pk", flat=True):
        event_dispatch(event_id=event_id)


def make_delivery(
    tenant: Tenant, url: str, events: list[str] | None = None
) -> tuple[WebhookDelivery, str]:
    """An endpoint at ``url``, an event for it, and the one delivery dispatch makes of it."""
    endpoint, secret = webhook_endpoint_create(
        actor=principal_for(tenant.participant),
        url=url,
        enabled_events=events or ["participant.updated"],
    )
    dispatch_pending()
    event = emit(tenant.participant)
    assert event_dispatch(event_id=event.pk) == 1
    return WebhookDelivery.objects.get(event=event, endpoint=endpoint), secret


def attempt_log(delivery: WebhookDelivery | str) -> list[tuple[int, int | None, str]]:
    return list(
        WebhookAttempt.objects.filter(delivery=delivery)
        .order_by("number")
        .values_list("number", "status_code", "error")
    )


# --- claim, send, record ---------------------------------------------------------------------


def test_an_attempt_is_claimed_sent_and_recorded(tenants, receiver):
    delivery, secret = make_delivery(tenants["merchant"], receiver.url)
    before = timezone.now()

    assert webhook_attempt(delivery_id=delivery.pk, attempt=0) == "succeeded"

    after = timezone.now()
    (got,) = receiver.wait_for(1)
    assert matching_signatures(secret=secret, headers=got.headers, body=got.body) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert (delivery.last_status_code, delivery.last_error) == (200, "")
    assert delivery.next_attempt_at is None
    assert delivery.completed_at is not None
    assert before <= delivery.completed_at <= after
    (row,) = WebhookAttempt.objects.filter(delivery=delivery)
    assert (row.number, row.status_code, row.error, row.response_excerpt) == (
        1,
        200,
        "",
        '{"ok":true}',
    )
    assert before <= row.started_at <= after
    assert 0 <= row.duration_ms <= (after - before).total_seconds() * 1000 + 1


@pytest.mark.parametrize("answer", [200, 500])
def test_a_duplicate_task_for_the_same_attempt_sends_nothing(tenants, receiver, answer):
    receiver.default = answer
    delivery, _ = make_delivery(tenants["merchant"], receiver.url)

    first = webhook_attempt(delivery_id=delivery.pk, attempt=0)
    second = webhook_attempt(delivery_id=delivery.pk, attempt=0)

    assert first == ("succeeded" if answer == 200 else "pending")
    assert second is None
    assert receiver.count() == 1
    assert attempt_log(delivery) == [(1, answer, "" if answer == 200 else f"HTTP {answer}")]
    delivery.refresh_from_db()
    assert delivery.attempts == 1


def test_failed_attempts_follow_the_retry_schedule_then_give_up(
    tenants, receiver, settings, sent_tasks, django_capture_on_commit_callbacks
):
    settings.HUB = {**settings.HUB, "WEBHOOK_RETRY_SCHEDULE": [5.0, 300.0, 1800.0]}
    receiver.default = 500
    delivery, _ = make_delivery(tenants["merchant"], receiver.url)

    for number, delay in enumerate([5.0, 300.0, 1800.0], start=1):
        before = timezone.now()
        with django_capture_on_commit_callbacks(execute=True):
            assert webhook_attempt(delivery_id=delivery.pk, attempt=number - 1) == "pending"
        after = timezone.now()
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.status) == (number, "pending")
        assert delivery.next_attempt_at is not None
        assert before + timedelta(seconds=delay) <= delivery.next_attempt_at
        assert delivery.next_attempt_at <= after + timedelta(seconds=delay)
        assert (delivery.last_status_code, delivery.last_error) == (500, "HTTP 500")
        # A short wait goes to the broker with a countdown; a long one is left to the sweeper.
        expected = (
            [
                (
                    "hub.webhook_attempt",
                    {"delivery_id": delivery.pk, "attempt": number},
                    {"countdown": delay},
                )
            ]
            if delay <= settings.HUB["WEBHOOK_SWEEP_SECONDS"] * 4
            else []
        )
        assert sent_tasks.calls == expected
        sent_tasks.calls.clear()
        # Not before its time.
        assert webhook_attempt(delivery_id=delivery.pk, attempt=number) is None
        assert receiver.count() == number
        # Time passes.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )

    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_attempt(delivery_id=delivery.pk, attempt=3) == "failed"

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 4, None)
    assert delivery.completed_at is not None
    assert (delivery.last_status_code, delivery.last_error) == (500, "HTTP 500")
    assert attempt_log(delivery) == [(n, 500, "HTTP 500") for n in (1, 2, 3, 4)]
    assert receiver.count() == 4
    assert sent_tasks.calls == []
    assert webhook_attempt(delivery_id=delivery.pk, attempt=4) is None
    assert receiver.count() == 4


def test_an_attempt_in_flight_is_leased(tenants, receiver, sent_tasks, monkeypatch):
    delivery, _ = make_delivery(tenants["merchant"], receiver.url)
    real_send = webhooks_module._send
    seen: dict[str, Any] = {}

    def send_and_look(claim: Any) -> Any:
        row = WebhookDelivery.objects.get(pk=claim.delivery_id)
        seen["attempts"], seen["next_attempt_at"] = row.attempts, row.next_attempt_at
        seen["now"] = timezone.now()
        seen["duplicate"] = webhook_attempt(delivery_id=claim.delivery_id, attempt=0)
        seen["next_number"] = webhook_attempt(delivery_id=claim.delivery_id, attempt=1)
        seen["sweep"] = webhook_sweep()
        return real_send(claim)

    monkeypatch.setattr(webhooks_module, "_send", send_and_look)
    before = timezone.now()

    assert webhook_attempt(delivery_id=delivery.pk, attempt=0) == "succeeded"

    assert seen["attempts"] == 1
    lease = timedelta(seconds=LEASE_SECONDS)
    assert before + lease <= seen["next_attempt_at"] <= seen["now"] + lease
    assert (seen["duplicate"], seen["next_number"], seen["sweep"]) == (None, None, (0, 0))
    assert sent_tasks.calls == []
    assert receiver.count() == 1
    assert attempt_log(delivery) == [(1, 200, "")]


class WorkerLost(Exception):
    pass


def test_a_lost_workers_attempt_is_retried_after_its_lease_and_logged(
    tenants, receiver, sent_tasks, monkeypatch
):
    delivery, _ = make_delivery(tenants["merchant"], receiver.url)
    real_send = webhooks_module._send
    crash = {"on": True}

    def send(claim: Any) -> Any:
        if crash["on"]:
            raise WorkerLost
        return real_send(claim)

    monkeypatch.setattr(webhooks_module, "_send", send)
    with pytest.raises(WorkerLost):
        webhook_attempt(delivery_id=delivery.pk, attempt=0)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert attempt_log(delivery) == []
    assert webhook_sweep() == (0, 0)  # the lease still holds
    assert sent_tasks.calls == []

    later = timezone.now() + timedelta(seconds=LEASE_SECONDS + 1)
    assert webhook_sweep(now=later) == (1, 0)
    lease_until = later + timedelta(seconds=LEASE_SECONDS)
    assert sent_tasks.of("hub.webhook_attempt") == [
        {"delivery_id": delivery.pk, "attempt": 1, "lease": lease_until.isoformat()}
    ]
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == lease_until
    # While that task waits in the queue, later sweeps leave the delivery alone ...
    assert webhook_sweep(now=later) == (0, 0)
    assert len(sent_tasks.calls) == 1
    # ... and so does a stale task that does not carry the sweeper's lease.
    crash["on"] = False
    assert webhook_attempt(delivery_id=delivery.pk, attempt=1) is None
    assert receiver.count() == 0

    (kwargs,) = sent_tasks.of("hub.webhook_attempt")
    assert webhook_attempt(**kwargs) == "succeeded"
    assert webhook_attempt(**kwargs) is None

    assert receiver.count() == 1
    assert attempt_log(delivery) == [(1, None, LOST_ATTEMPT_ERROR), (2, 200, "")]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)


def test_a_late_outcome_replaces_the_lost_attempt_placeholder(tenants, receiver, monkeypatch):
    """A worker that outlives its lease records its real outcome over the placeholder."""
    receiver.default = 500
    delivery, _ = make_delivery(tenants["merchant"], receiver.url)
    real_send = webhooks_module._send

    def slow_send(claim: Any) -> Any:
        # The lease runs out and another worker makes the next attempt meanwhile.
        WebhookDelivery.objects.filter(pk=claim.delivery_id).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        monkeypatch.setattr(webhooks_module, "_send", real_send)
        assert webhook_attempt(delivery_id=claim.delivery_id, attempt=1) == "pending"
        assert attempt_log(claim.delivery_id) == [
            (1, None, LOST_ATTEMPT_ERROR),
            (2, 500, "HTTP 500"),
        ]
        return real_send(claim)

    monkeypatch.setattr(webhooks_module, "_send", slow_send)

    assert webhook_attempt(delivery_id=delivery.pk, attempt=0) == "pending"

    assert attempt_log(delivery) == [(1, 500, "HTTP 500"), (2, 500, "HTTP 500")]
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert receiver.count() == 2


def test_the_sweep_enqueues_each_due_delivery_once_per_lease(tenants, receiver, sent_tasks):
    merchant = tenants["merchant"]
    endpoints = [
        webhook_endpoint_create(
            actor=principal_for(merchant.participant),
            url=receiver.url,
            enabled_events=["participant.updated"],
        )[0]
        for _ in range(4)
    ]
    dispatch_pending()
    event = emit(merchant.participant)
    assert event_dispatch(event_id=event.pk) == 4
    due, not_due, succeeded, failed = (
        WebhookDelivery.objects.get(event=event, endpoint=e) for e in endpoints
    )
    now = timezone.now()
    past = now - timedelta(minutes=1)
    WebhookDelivery.objects.filter(pk=due.pk).update(attempts=2, next_attempt_at=past)
    WebhookDelivery.objects.filter(pk=not_due.pk).update(
        attempts=2, next_attempt_at=now + timedelta(hours=1)
    )
    WebhookDelivery.objects.filter(pk=succeeded.pk).update(status="succeeded", next_attempt_at=None)
    WebhookDelivery.objects.filter(pk=failed.pk).update(status="failed", next_attempt_at=past)

    assert webhook_sweep(now=now) == (1, 0)
    lease_until = now + timedelta(seconds=LEASE_SECONDS)
    assert sent_tasks.calls == [
        (
            "hub.webhook_attempt",
            {"delivery_id": due.pk, "attempt": 2, "lease": lease_until.isoformat()},
            {},
        )
    ]
    assert webhook_sweep(now=now) == (0, 0)
    assert webhook_sweep(now=now + timedelta(seconds=LEASE_SECONDS - 1)) == (0, 0)
    # The task was lost: once the lease is over, the sweeper sends another.
    assert webhook_sweep(now=lease_until) == (1, 0)
    assert [k["delivery_id"] for k in sent_tasks.of("hub.webhook_attempt")] == [due.pk, due.pk]
    assert receiver.count() == 0


def test_a_delivery_to_a_disabled_endpoint_fails_without_sending(api, tenants, receiver):
    merchant = tenants["merchant"]
    delivery, _ = make_delivery(merchant, receiver.url)
    response = api.post(
        f"/v1/webhook_endpoints/{delivery.endpoint_id}", {"status": "disabled"}, key=merchant.key
    )
    assert response.status_code == 200

    assert webhook_attempt(delivery_id=delivery.pk, attempt=0) is None

    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error, delivery.next_attempt_at) == (
        "failed",
        "endpoint disabled",
        None,
    )
    assert delivery.completed_at is not None
    assert receiver.count() == 0
    assert attempt_log(delivery) == []
    # A disabled endpoint gets no new deliveries either.
    assert event_dispatch(event_id=emit(merchant.participant).pk) == 0


def test_410_disables_the_endpoint_and_tells_its_owner(tenants, receiver):
    receiver.default = 410
    delivery, _ = make_delivery(tenants["merchant"], receiver.url)

    assert webhook_attempt(delivery_id=delivery.pk, attempt=0) == "failed"

    endpoint = WebhookEndpoint.objects.get(pk=delivery.endpoint_id)
    assert (endpoint.status, endpoint.disabled_reason) == ("disabled", GONE_REASON)
    assert attempt_log(delivery) == [(1, 410, "HTTP 410")]
    event = Event.objects.get(type="webhook_endpoint.updated")
    assert event.participant_id == tenants["merchant"].id
    assert event.data == {
        "id": endpoint.pk,
        "url": receiver.url,
        "enabled_events": ["participant.updated"],
        "status": "disabled",
    }


def test_redirects_are_not_followed(tenants, receiver):
    receiver.default = 307
    delivery, _ = make_delivery(tenants["merchant"], receiver.url)
    assert webhook_attempt(delivery_id=delivery.pk, attempt=0) == "pending"
    assert attempt_log(delivery) == [(1, 307, "HTTP 307")]
    assert receiver.count() == 1


def test_the_answer_is_logged_cut_short_and_without_nul(tenants, receiver):
    receiver.script = [("body", 200, b"\x00" + "\u00e9".encode() + b"x" * 5000)]
    delivery, _ = make_delivery(tenants["merchant"], receiver.url)

    assert webhook_attempt(delivery_id=delivery.pk, attempt=0) == "succeeded"

    row = WebhookAttempt.objects.get(delivery=delivery)
    assert row.response_excerpt == "\ufffd\u00e9" + "x" * 997
    assert len(row.response_excerpt.encode()) <= 1000 + 3


def test_an_unreachable_receiver_is_logged_as_a_connection_error(tenants):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now.
    delivery, _ = make_delivery(tenants["merchant"], f"http://127.0.0.1:{port}/hooks")

    assert webhook_attempt(delivery_id=delivery.pk, attempt=0) == "pending"

    ((number, status, error),) = attempt_log(delivery)
    assert (number, status) == (1, None)
    assert error.startswith("connection error: ")


# --- concurrency -----------------------------------------------------------------------------


def run_together(count: int, work: Any) -> list[Any]:
    """Run ``work()`` in ``count`` threads released at once; return their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(work())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == count
    return results


def test_concurrent_duplicate_tasks_send_once(transactional_db, tenants, receiver, sent_tasks):
    delivery, _ = make_delivery(tenants["merchant"], receiver.url)

    results = run_together(4, lambda: webhook_attempt(delivery_id=delivery.pk, attempt=0))

    assert sorted(results, key=str) == [None, None, None, "succeeded"]
    assert receiver.count() == 1
    assert attempt_log(delivery) == [(1, 200, "")]


def test_concurrent_sweeps_enqueue_each_due_delivery_once(transactional_db, tenants, sent_tasks):
    merchant = tenants["merchant"]
    webhook_endpoint_create(
        actor=principal_for(merchant.participant),
        url="https://hooks.example.com/x",
        enabled_events=["participant.updated"],
    )
    for _ in range(20):
        assert event_dispatch(event_id=emit(merchant.participant).pk) == 1
    sent_tasks.calls.clear()
    moment = timezone.now() + timedelta(seconds=1)

    results = run_together(3, lambda: webhook_sweep(now=moment))

    assert sum(due for due, _ in results) == 20
    sent = [k["delivery_id"] for k in sent_tasks.of("hub.webhook_attempt")]
    assert sorted(sent) == sorted(WebhookDelivery.objects.values_list("pk", flat=True))


# --- the Celery app --------------------------------------------------------------------------


def test_beat_schedules_every_periodic_task_even_if_the_app_is_finalized_before_tasks_load():
    code = (
        "import json, django; django.setup()\n"
        "from hub.celery_app import app\n"
        "app.finalize()\n"
        "print(json.dumps(sorted([k, v['task'], v['schedule']]"
        " for k, v in app.conf.beat_schedule.items())))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "hub.settings", "HUB_WEBHOOK_SWEEP_SECONDS": "7"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "raised" not in done.stderr, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [
        ["adapter operation repair", "hub.adapter_repair", 10.0],
        ["fx auto-conversion sweep", "hub.fx_auto_convert_sweep", 300.0],
        ["idempotency purge", "hub.idempotency_purge", 3600.0],
        ["inbound notifications apply", "hub.inbound_apply", 5.0],
        ["ledger holds expiry", "hub.ledger_expire_holds", 10.0],
        ["payins sweep", "hub.payins_send_unsent", 30.0],
        ["payouts sweep", "hub.payouts_send_unsent", 30.0],
        ["receipts check", "hub.receipts_check", 600.0],
        ["receipts sweep", "hub.receipts_issue", 30.0],
        ["refunds sweep", "hub.refunds_send_unsent", 30.0],
        ["settlement runs", "hub.settlement_runs", 60.0],
        ["transparency checkpoints", "hub.transparency_checkpoint", 60.0],
        ["transparency log check", "hub.transparency_check", 600.0],
        ["webhook sweep", "hub.webhook_sweep", 7.0],
    ]


# --- with a real worker ----------------------------------------------------------------------


def create_endpoint(api: Api, tenant: Tenant, url: str, events: list[str]) -> dict[str, Any]:
    response = api.post(
        "/v1/webhook_endpoints", {"url": url, "enabled_events": events}, key=tenant.key
    )
    assert response.status_code == 201, response.content
    body: dict[str, Any] = response.json()
    return body


def change_merchant(api: Api, tenants: dict[str, Tenant], note: str) -> Event:
    merchant = tenants["merchant"]
    response = api.post(
        f"/v1/participants/{merchant.id}", {"metadata": {"note": note}}, key=tenants["operator"].key
    )
    assert response.status_code == 200, response.content
    return Event.objects.get(type="participant.updated", request_id=response["Request-Id"])


def settled(event: Event, count: int, log: Any) -> dict[str, WebhookDelivery]:
    """Wait until ``event`` has ``count`` deliveries, none pending; by endpoint id."""

    def check() -> dict[str, WebhookDelivery] | None:
        rows = list(WebhookDelivery.objects.filter(event=event, replay_of=None))
        if len(rows) == count and all(r.status != "pending" for r in rows):
            return {r.endpoint_id: r for r in rows}
        return None

    return wait_until(check, timeout=60, what=f"{count} settled deliveries", log=log)


@pytest.mark.worker
def test_worker_retries_until_success_gives_up_and_stops_on_410(
    api, tenants, receiver_factory, celery_worker_factory
):
    worker = celery_worker_factory(
        HUB_WEBHOOK_RETRY_SCHEDULE="0.5,0.5,0.5", HUB_WEBHOOK_TIMEOUT="1"
    )
    merchant = tenants["merchant"]
    receivers = {
        "ok": receiver_factory(),
        "flaky": receiver_factory(script=[500, ("sleep", 3, 200), "reset"], default=200),
        "dead": receiver_factory(default=503),
        "gone": receiver_factory(default=410),
    }
    endpoints = {
        name: create_endpoint(api, merchant, rx.url, ["participant.updated"])
        for name, rx in receivers.items()
    }
    watcher = receiver_factory()
    create_endpoint(api, merchant, watcher.url, ["webhook_endpoint.updated"])

    event = change_merchant(api, tenants, "first")
    by_endpoint = settled(event, 4, worker.log)
    deliveries = {name: by_endpoint[e["id"]] for name, e in endpoints.items()}

    # First try.
    assert (deliveries["ok"].status, deliveries["ok"].attempts) == ("succeeded", 1)
    assert attempt_log(deliveries["ok"]) == [(1, 200, "")]
    assert receivers["ok"].count() == 1

    # 500, timeout, reset, then 200: four attempts of the same message, each saying why.
    flaky = deliveries["flaky"]
    assert (flaky.status, flaky.attempts, flaky.last_status_code) == ("succeeded", 4, 200)
    log = attempt_log(flaky)
    assert [(n, s) for n, s, _ in log] == [(1, 500), (2, None), (3, None), (4, 200)]
    assert [e for _, _, e in log][:2] == ["HTTP 500", "timeout"]
    assert log[2][2].startswith("connection error: ")
    assert log[3][2] == ""
    got = receivers["flaky"].wait_for(4)
    assert len(got) == 4
    assert {r.headers["webhook-id"] for r in got} == {event.pk}
    assert {r.body for r in got} == {got[0].body}
    for received in got:
        assert (
            matching_signatures(
                secret=endpoints["flaky"]["secret"], headers=received.headers, body=received.body
            )
            == 1
        )
    shown = api.get(f"/v1/webhook_deliveries/{flaky.pk}", key=merchant.key).json()
    assert [(a["number"], a["status_code"], a["error"]) for a in shown["attempt_log"]] == log

    # Every attempt failing: given up when the schedule is spent, every attempt on record.
    dead = deliveries["dead"]
    assert (dead.status, dead.attempts, dead.next_attempt_at) == ("failed", 4, None)
    assert (dead.last_status_code, dead.last_error) == (503, "HTTP 503")
    assert dead.completed_at is not None
    assert attempt_log(dead) == [(n, 503, "HTTP 503") for n in (1, 2, 3, 4)]
    assert receivers["dead"].count() == 4

    # 410: one attempt, the endpoint disabled with a reason, and its owner told.
    gone = deliveries["gone"]
    assert (gone.status, gone.attempts) == ("failed", 1)
    assert attempt_log(gone) == [(1, 410, "HTTP 410")]
    shown = api.get(f"/v1/webhook_endpoints/{endpoints['gone']['id']}", key=merchant.key).json()
    assert (shown["status"], shown["disabled_reason"]) == ("disabled", GONE_REASON)
    (notice,) = watcher.wait_for(1)
    body = json.loads(notice.body)
    assert body["type"] == "webhook_endpoint.updated"
    assert body["data"]["object"] == {
        "id": endpoints["gone"]["id"],
        "url": receivers["gone"].url,
        "enabled_events": ["participant.updated"],
        "status": "disabled",
    }

    # The next event goes everywhere but the disabled endpoint.
    receivers["dead"].default = 200
    second = change_merchant(api, tenants, "second")
    after = settled(second, 3, worker.log)
    assert set(after) == {endpoints[n]["id"] for n in ("ok", "flaky", "dead")}
    assert {d.status for d in after.values()} == {"succeeded"}
    assert receivers["gone"].count() == 1
    assert WebhookDelivery.objects.filter(endpoint_id=endpoints["gone"]["id"]).count() == 1
    assert (receivers["ok"].count(), receivers["flaky"].count(), receivers["dead"].count()) == (
        2,
        5,
        5,
    )
    # Nothing is left for the sweeper to retry or relay.
    assert webhook_sweep() == (0, 0)
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == ("failed", 4)


@pytest.mark.worker
def test_worker_delivers_replays_and_relays_a_lost_event(api, tenants, receiver, celery_worker):
    merchant, other = tenants["merchant"], tenants["other_merchant"]
    endpoint = create_endpoint(api, merchant, receiver.url, ["participant.updated"])

    event = change_merchant(api, tenants, "first")
    original = settled(event, 1, celery_worker.log)[endpoint["id"]]

    (got,) = receiver.wait_for(1)
    assert matching_signatures(secret=endpoint["secret"], headers=got.headers, body=got.body) == 1
    assert got.headers["webhook-id"] == event.pk
    assert json.loads(got.body) == api.get(f"/v1/events/{event.pk}", key=merchant.key).json()

    listed = api.get(f"/v1/webhook_endpoints/{endpoint['id']}/deliveries", key=merchant.key)
    assert listed.status_code == 200
    body = listed.json()
    assert body["has_more"] is False
    (item,) = body["data"]
    assert item == {
        "id": original.pk,
        "object": "webhook_delivery",
        "endpoint": endpoint["id"],
        "event": event.pk,
        "event_type": "participant.updated",
        "replay_of": None,
        "status": "succeeded",
        "attempts": 1,
        "next_attempt_at": None,
        "last_status_code": 200,
        "last_error": "",
        "created_at": item["created_at"],
        "completed_at": item["completed_at"],
    }
    assert item["completed_at"] is not None
    detail = api.get(f"/v1/webhook_deliveries/{original.pk}", key=merchant.key).json()
    (attempt,) = detail.pop("attempt_log")
    assert detail == item
    assert set(attempt) == {
        "number",
        "started_at",
        "duration_ms",
        "status_code",
        "error",
        "response_excerpt",
    }
    assert (attempt["number"], attempt["status_code"], attempt["error"]) == (1, 200, "")
    assert attempt["response_excerpt"] == '{"ok":true}'
    for path in (
        f"/v1/webhook_deliveries/{original.pk}",
        f"/v1/webhook_endpoints/{endpoint['id']}/deliveries",
    ):
        refused = api.get(path, key=other.key)
        assert refused.status_code == 404
        assert error_of(refused)["code"] == "resource_missing"
    refused = api.post(f"/v1/webhook_deliveries/{original.pk}/replay", {}, key=other.key)
    assert refused.status_code == 404

    # Replay: a new delivery of the same message, with its own attempt log.
    response = api.post(f"/v1/webhook_deliveries/{original.pk}/replay", {}, key=merchant.key)
    assert response.status_code == 201, response.content
    replay = response.json()
    assert replay["id"] != original.pk
    assert (replay["replay_of"], replay["event"], replay["endpoint"]) == (
        original.pk,
        event.pk,
        endpoint["id"],
    )
    wait_until(
        lambda: WebhookDelivery.objects.get(pk=replay["id"]).status == "succeeded",
        what="the replay to succeed",
        log=celery_worker.log,
    )
    again = receiver.wait_for(2)[1]
    assert again.headers["webhook-id"] == event.pk
    assert again.body == got.body
    assert matching_signatures(secret=endpoint["secret"], headers=again.headers, body=again.body)
    listed = api.get(f"/v1/webhook_endpoints/{endpoint['id']}/deliveries", key=merchant.key).json()
    assert [(d["id"], d["replay_of"], d["attempts"]) for d in listed["data"]] == [
        (replay["id"], original.pk, 1),
        (original.pk, None, 1),
    ]
    assert attempt_log(original) == [(1, 200, "")]
    assert attempt_log(replay["id"]) == [(1, 200, "")]

    # An event whose hand-off to the broker was lost is relayed by the sweeper.
    lost = Event.objects.create(
        type="participant.updated",
        participant=merchant.participant,
        livemode=False,
        data={"id": merchant.id},
        created_at=timezone.now() - timedelta(hours=1),
    )
    assert webhook_sweep() == (0, 1)
    settled(lost, 1, celery_worker.log)
    third = receiver.wait_for(3)[2]
    assert third.headers["webhook-id"] == lost.pk
    lost.refresh_from_db()
    assert isinstance(lost.dispatched_at, datetime)


def test_a_replay_needs_an_enabled_endpoint(api, tenants, receiver):
    merchant = tenants["merchant"]
    receiver.default = 410
    delivery, _ = make_delivery(merchant, receiver.url)
    assert webhook_attempt(delivery_id=delivery.pk, attempt=0) == "failed"

    response = api.post(f"/v1/webhook_deliveries/{delivery.pk}/replay", {}, key=merchant.key)

    assert response.status_code == 409
    assert error_of(response)["code"] == "webhook_endpoint_disabled"
    assert WebhookDelivery.objects.count() == 1
