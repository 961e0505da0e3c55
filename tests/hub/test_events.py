"""Events: the transactional outbox, the events API, and the fan-out into webhook deliveries."""

from __future__ import annotations

import math
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import hub.services.events as events_module
import hub.services.webhooks as webhooks_module
import hub.tasks
from hub.models import Event, Participant, WebhookDelivery, WebhookEndpoint
from hub.services.events import event_emit
from hub.services.participants import participant_payload
from hub.services.webhooks import (
    event_dispatch,
    webhook_endpoint_create,
    webhook_endpoint_update,
    webhook_sweep,
)
from tests.conftest import Tenant, error_of
from tests.factories import issue_key, principal_for

EVENT_FIELDS = {
    "id",
    "object",
    "type",
    "created_at",
    "livemode",
    "participant",
    "request_id",
    "data",
}


def emit(owner: Participant, type: str = "participant.updated", *, livemode: bool = False) -> Event:
    with transaction.atomic():
        return event_emit(type=type, owner=owner, livemode=livemode, data={"id": owner.pk})


# --- the outbox ------------------------------------------------------------------------------


def test_a_change_writes_its_event_and_hands_it_off_after_commit(
    transactional_db, api, tenants, sent_tasks
):
    operator, merchant = tenants["operator"], tenants["merchant"]

    response = api.post(
        f"/v1/participants/{merchant.id}", {"metadata": {"erp": "sap"}}, key=operator.key
    )

    assert response.status_code == 200, response.content
    event = Event.objects.get()
    assert event.type == "participant.updated"
    assert event.participant_id == merchant.id
    assert event.livemode is False
    assert event.request_id == response["Request-Id"]
    assert event.dispatched_at is None
    assert event.data == participant_payload(Participant.objects.get(pk=merchant.id))
    assert sent_tasks.calls == [("hub.event_dispatch", {"event_id": event.pk}, {})]


def test_a_change_that_fails_after_its_event_leaves_neither(
    transactional_db, api, tenants, sent_tasks, monkeypatch
):
    real_emit = webhooks_module.event_emit

    def emit_then_fail(**kwargs: Any) -> Event:
        real_emit(**kwargs)
        assert Event.objects.filter(type=kwargs["type"]).count() == 1  # written, not committed
        raise RuntimeError("the disk filled up")

    monkeypatch.setattr(webhooks_module, "event_emit", emit_then_fail)

    response = api.post(
        "/v1/webhook_endpoints",
        {"url": "https://hooks.example.com/a", "enabled_events": ["*"]},
        key=tenants["merchant"].key,
    )

    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"
    assert WebhookEndpoint.objects.count() == 0
    assert Event.objects.count() == 0
    assert sent_tasks.calls == []


def test_a_rolled_back_transaction_takes_its_events_with_it(transactional_db, tenants, sent_tasks):
    owner = tenants["merchant"].participant

    def change_that_fails() -> None:
        with transaction.atomic():
            event_emit(type="participant.updated", owner=owner, livemode=False, data={})
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        change_that_fails()

    assert Event.objects.count() == 0
    assert sent_tasks.calls == []

    kept = emit(owner)
    assert list(Event.objects.values_list("pk", flat=True)) == [kept.pk]
    assert sent_tasks.calls == [("hub.event_dispatch", {"event_id": kept.pk}, {})]


def test_an_event_outside_a_transaction_is_refused(transactional_db, tenants, sent_tasks):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        event_emit(
            type="participant.updated",
            owner=tenants["merchant"].participant,
            livemode=False,
            data={},
        )
    assert Event.objects.count() == 0
    assert sent_tasks.calls == []


def test_event_emit_refuses_unknown_types_and_a_missing_mode(tenants):
    owner = tenants["merchant"].participant
    with pytest.raises(ValueError, match="unregistered"), transaction.atomic():
        event_emit(type="participant.exploded", owner=owner, livemode=False, data={})
    with pytest.raises(ValueError, match="mode"), transaction.atomic():
        event_emit(type="participant.updated", owner=owner, data={})
    assert Event.objects.count() == 0


def test_an_actors_mode_and_request_id_go_on_the_event(tenants):
    owner = tenants["merchant"].participant
    actor = principal_for(owner, livemode=True, request_id="req_abc")
    with transaction.atomic():
        event = event_emit(type="participant.updated", owner=owner, actor=actor, data={"a": 1})
    event.refresh_from_db()
    assert (event.livemode, event.request_id, event.data) == (True, "req_abc", {"a": 1})


# --- the events API --------------------------------------------------------------------------


def list_events(api: Any, tenant: Tenant | str, **params: str) -> dict[str, Any]:
    key = tenant if isinstance(tenant, str) else tenant.key
    response = api.get("/v1/events", key=key, params=params)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    assert set(body) == {"object", "data", "has_more", "url"}
    assert body["object"] == "list"
    return body


def test_participants_see_their_own_events_and_the_operator_sees_all(api, tenants):
    merchant, other, operator = tenants["merchant"], tenants["other_merchant"], tenants["operator"]
    mine = [emit(merchant.participant).pk, emit(merchant.participant, "api_key.created").pk]
    theirs = emit(other.participant).pk
    live = emit(merchant.participant, livemode=True).pk

    assert [e["id"] for e in list_events(api, merchant)["data"]] == sorted(mine, reverse=True)
    assert [e["id"] for e in list_events(api, other)["data"]] == [theirs]
    assert [e["id"] for e in list_events(api, operator)["data"]] == sorted(
        [*mine, theirs], reverse=True
    )
    live_key = issue_key(merchant.participant, livemode=True)
    assert [e["id"] for e in list_events(api, live_key)["data"]] == [live]

    response = api.get(f"/v1/events/{mine[0]}", key=merchant.key)
    assert response.status_code == 200
    event = Event.objects.get(pk=mine[0])
    assert response.json() == {
        "id": event.pk,
        "object": "event",
        "type": "participant.updated",
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "livemode": False,
        "participant": merchant.id,
        "request_id": None,
        "data": {"object": {"id": merchant.id}},
    }
    assert api.get(f"/v1/events/{mine[0]}", key=operator.key).json() == response.json()
    for key, event_id in ((other.key, mine[0]), (merchant.key, theirs), (live_key, mine[0])):
        refused = api.get(f"/v1/events/{event_id}", key=key)
        assert refused.status_code == 404
        assert error_of(refused)["code"] == "resource_missing"


def test_events_filter_by_type(api, tenants):
    merchant = tenants["merchant"]
    updated = [emit(merchant.participant).pk for _ in range(2)]
    created = emit(merchant.participant, "api_key.created").pk

    body = list_events(api, merchant, type="participant.updated")
    assert [e["id"] for e in body["data"]] == sorted(updated, reverse=True)
    assert {e["type"] for e in body["data"]} == {"participant.updated"}
    assert [e["id"] for e in list_events(api, merchant, type="api_key.created")["data"]] == [
        created
    ]
    assert list_events(api, merchant, type="api_key.revoked")["data"] == []

    for unknown in ("participant.exploded", "", "*"):
        response = api.get("/v1/events", key=merchant.key, params={"type": unknown})
        assert response.status_code == 400
        error = error_of(response)
        assert (error["code"], error["param"]) == ("event_type_unknown", "type")


def test_events_are_paginated_newest_first(api, tenants):
    merchant = tenants["merchant"]
    ids = sorted((emit(merchant.participant).pk for _ in range(5)), reverse=True)

    page = list_events(api, merchant, limit="2")
    assert ([e["id"] for e in page["data"]], page["has_more"]) == (ids[:2], True)
    page = list_events(api, merchant, limit="2", starting_after=ids[1])
    assert ([e["id"] for e in page["data"]], page["has_more"]) == (ids[2:4], True)
    page = list_events(api, merchant, limit="2", starting_after=ids[3])
    assert ([e["id"] for e in page["data"]], page["has_more"]) == (ids[4:], False)
    page = list_events(api, merchant, limit="2", ending_before=ids[4])
    assert ([e["id"] for e in page["data"]], page["has_more"]) == (ids[2:4], True)
    page = list_events(api, merchant, limit="2", ending_before=ids[2])
    assert ([e["id"] for e in page["data"]], page["has_more"]) == (ids[:2], False)
    page = list_events(api, merchant, limit="2", type="participant.updated")
    assert [e["id"] for e in page["data"]] == ids[:2]
    assert list_events(api, merchant)["data"][0]["id"] == ids[0]
    assert len(list_events(api, merchant)["data"]) == 5


def test_listing_events_costs_the_same_queries_for_one_or_many(api, tenants):
    merchant = tenants["merchant"]
    emit(merchant.participant)
    list_events(api, merchant)  # the key's first use of the minute also records last_used_at
    with CaptureQueriesContext(connection) as one:
        assert len(list_events(api, merchant)["data"]) == 1
    for _ in range(9):
        emit(merchant.participant)
    with CaptureQueriesContext(connection) as ten:
        assert len(list_events(api, merchant)["data"]) == 10
    assert len(ten.captured_queries) == len(one.captured_queries)


# --- fan-out into deliveries -----------------------------------------------------------------


def make_endpoint(
    tenant: Tenant, events: list[str], *, livemode: bool = False, enabled: bool = True
) -> WebhookEndpoint:
    actor = principal_for(tenant.participant, livemode=livemode)
    endpoint, _ = webhook_endpoint_create(
        actor=actor, url="https://hooks.example.com/x", enabled_events=events
    )
    if not enabled:
        endpoint = webhook_endpoint_update(endpoint_id=endpoint.pk, actor=actor, status="disabled")
    return endpoint


def test_dispatch_creates_one_delivery_per_subscribed_enabled_endpoint(
    tenants, sent_tasks, django_capture_on_commit_callbacks
):
    merchant = tenants["merchant"]
    everything = make_endpoint(merchant, ["*"])
    this_type = make_endpoint(merchant, ["participant.updated", "api_key.created"])
    make_endpoint(merchant, ["api_key.created"])  # another type
    make_endpoint(merchant, ["*"], enabled=False)
    make_endpoint(merchant, ["*"], livemode=True)
    make_endpoint(tenants["other_merchant"], ["*"])
    make_endpoint(tenants["operator"], ["*"])
    event = emit(merchant.participant)
    sent_tasks.calls.clear()

    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        created = event_dispatch(event_id=event.pk)

    assert created == 2
    deliveries = WebhookDelivery.objects.filter(event=event)
    assert {d.endpoint_id for d in deliveries} == {everything.pk, this_type.pk}
    for delivery in deliveries:
        assert delivery.status == "pending"
        assert delivery.attempts == 0
        assert delivery.replay_of_id is None
        assert delivery.next_attempt_at is not None
        assert before <= delivery.next_attempt_at <= timezone.now()
    assert sorted(sent_tasks.of("hub.webhook_attempt"), key=lambda k: k["delivery_id"]) == [
        {"delivery_id": d.pk, "attempt": 0} for d in deliveries.order_by("pk")
    ]
    assert sent_tasks.names() == ["hub.webhook_attempt"] * 2
    event.refresh_from_db()
    assert event.dispatched_at is not None
    assert WebhookDelivery.objects.count() == 2

    # Dispatching again (a duplicate task, or the relay) adds nothing.
    sent_tasks.calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert event_dispatch(event_id=event.pk) == 0
    assert WebhookDelivery.objects.count() == 2
    assert sent_tasks.calls == []


def test_dispatch_with_no_subscriber_still_marks_the_event(tenants):
    make_endpoint(tenants["merchant"], ["api_key.created"])
    event = emit(tenants["merchant"].participant)
    assert event_dispatch(event_id=event.pk) == 0
    event.refresh_from_db()
    assert event.dispatched_at is not None
    assert WebhookDelivery.objects.count() == 0


def test_dispatch_of_an_unknown_event_does_nothing(tenants):
    assert event_dispatch(event_id="evt_01jd3k0000000000000000000") == 0


def test_the_sweep_relays_events_whose_hand_off_was_lost(tenants, sent_tasks):
    merchant = tenants["merchant"]
    endpoint = make_endpoint(merchant, ["participant.updated"])
    long_ago = timezone.now() - timedelta(hours=1)
    lost = Event.objects.create(
        type="participant.updated",
        participant=merchant.participant,
        livemode=False,
        data={},
        created_at=long_ago,
    )
    Event.objects.create(  # handed off and dispatched
        type="participant.updated",
        participant=merchant.participant,
        livemode=False,
        data={},
        created_at=long_ago,
        dispatched_at=long_ago,
    )
    emit(merchant.participant)  # fresh: its own hand-off is still on the way
    sent_tasks.calls.clear()

    assert webhook_sweep() == (0, 1)
    assert sent_tasks.calls == [("hub.event_dispatch", {"event_id": lost.pk}, {})]

    # What the worker then does with it.
    assert event_dispatch(event_id=lost.pk) == 1
    assert WebhookDelivery.objects.get(event=lost).endpoint_id == endpoint.pk
    sent_tasks.calls.clear()
    assert webhook_sweep() == (1, 0)
    assert sent_tasks.of("hub.event_dispatch") == []


class HeldSend:
    """The single-event task, recorded as ``sent_tasks`` records it, with its first send held
    until ``release``; ``commit`` emits and commits one event from the calling thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Participant) -> None:
        self.owner, self.made, self.senders = owner, list[str](), list[str]()
        self.sending, self.release = threading.Event(), threading.Event()
        self.recorder = hub.tasks.event_dispatch_task
        monkeypatch.setattr(hub.tasks, "event_dispatch_task", self)

    def apply_async(self, kwargs: dict[str, Any], **options: Any) -> None:
        self.senders.append(threading.current_thread().name)
        self.recorder.apply_async(kwargs, **options)
        if not self.sending.is_set():
            self.sending.set()
            assert self.release.wait(10)

    def commit(self) -> None:
        try:
            self.made.append(emit(self.owner).pk)
        finally:
            connection.close()

    def three_while_sending(self, sender_name: str | None = None) -> threading.Thread:
        """One event committed from a thread whose send is held, then three from other threads
        (each returns); the held thread is returned, still sending."""
        sender = threading.Thread(target=self.commit, name=sender_name)
        sender.start()
        assert self.sending.wait(10)
        others = [threading.Thread(target=self.commit) for _ in range(3)]
        for thread in others:
            thread.start()
        for thread in others:
            thread.join(10)
        return sender


def wait_for_calls(sent_tasks: Any, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(sent_tasks.calls) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_events_committed_while_one_is_being_sent_go_together_in_one_task(
    transactional_db, tenants, sent_tasks, monkeypatch
):
    """The thread sending holds the others' events and sends them in one task when it is done;
    none is lost, none sent twice."""
    held = HeldSend(monkeypatch, tenants["merchant"].participant)
    made = held.made

    sender = held.three_while_sending()
    # The three committed and returned while the first was still sending its own.
    assert len(made) == 3
    assert sent_tasks.names() == ["hub.event_dispatch"]
    held.release.set()
    sender.join(10)

    first = sent_tasks.calls[0][1]["event_id"]
    assert sent_tasks.names() == ["hub.event_dispatch", "hub.event_dispatch_many"]
    assert sorted(sent_tasks.calls[1][1]["event_ids"]) == sorted(set(made) - {first})
    assert Event.objects.filter(pk__in=made).count() == 4


def test_a_task_of_several_events_dispatches_each_once(tenants):
    from hub.tasks import event_dispatch_many_task

    merchant = tenants["merchant"]
    endpoint = make_endpoint(merchant, ["participant.updated"])
    events = [emit(merchant.participant) for _ in range(3)]
    ids = [event.pk for event in events]

    assert event_dispatch_many_task(event_ids=ids) == 3
    assert event_dispatch_many_task(event_ids=ids) == 0  # delivered again: nothing more

    assert sorted(WebhookDelivery.objects.values_list("event_id", flat=True)) == sorted(ids)
    assert set(WebhookDelivery.objects.values_list("endpoint_id", flat=True)) == {endpoint.pk}
    assert not Event.objects.filter(pk__in=ids, dispatched_at__isnull=True).exists()


def test_a_sender_hands_what_keeps_coming_to_a_thread_of_its_own(
    transactional_db, tenants, sent_tasks, monkeypatch
):
    """A committing thread sends at most HAND_OFF_ROUNDS batches; the rest go from another
    thread, so that its request is not held by the others' events. None is lost."""
    monkeypatch.setattr(events_module, "HAND_OFF_ROUNDS", 1)
    held = HeldSend(monkeypatch, tenants["merchant"].participant)
    made = held.made

    sender = held.three_while_sending("request-1")
    held.release.set()
    sender.join(10)
    wait_for_calls(sent_tasks, 2)

    assert held.senders == ["request-1"]  # its one round: its own event
    assert sent_tasks.names() == ["hub.event_dispatch", "hub.event_dispatch_many"]
    sent = [sent_tasks.calls[0][1]["event_id"], *sent_tasks.calls[1][1]["event_ids"]]
    assert sorted(sent) == sorted(made)


def test_a_worker_child_hands_off_what_waits_as_it_ends(monkeypatch):
    """Celery's children end with os._exit (no exit hooks): its shutdown signal flushes."""
    from celery.signals import worker_process_shutdown

    import hub.celery_app  # noqa: F401  (connects the receiver)

    flushed: list[bool] = []
    monkeypatch.setattr(events_module, "hand_off_flush", lambda: flushed.append(True))
    worker_process_shutdown.send(sender=None, pid=1, exitcode=0)
    assert flushed == [True]


def test_an_event_written_by_the_callers_statement(transactional_db, tenants, sent_tasks):
    """With ``alongside`` the event's INSERT goes to the caller, which sends it in a statement
    of its own; the row and the hand-off are those of any event."""
    if connection.vendor != "postgresql":
        pytest.skip("writes alongside a statement are PostgreSQL's")
    owner = tenants["merchant"].participant
    writes: list[tuple[str, list[Any]]] = []
    with transaction.atomic():
        event = event_emit(
            type="participant.updated", owner=owner, livemode=False, data={}, alongside=writes
        )
        assert not Event.objects.filter(pk=event.pk).exists()
        [(sql, params)] = writes
        assert sql.startswith('INSERT INTO "hub_event"')
        with connection.cursor() as cursor:
            cursor.execute(f"WITH w0 AS ({sql}) SELECT 1", params)

    stored = Event.objects.get(pk=event.pk)
    assert (stored.type, stored.participant_id, stored.livemode) == (
        "participant.updated",
        owner.pk,
        False,
    )
    assert sent_tasks.calls == [("hub.event_dispatch", {"event_id": event.pk}, {})]


def test_an_event_with_handlers_is_written_at_once(transactional_db, tenants, monkeypatch):
    """Its handlers may read it: ``alongside`` is left as it was."""
    read: list[bool] = []
    monkeypatch.setitem(
        events_module._HANDLERS,
        "participant.updated",
        [lambda event: read.append(Event.objects.filter(pk=event.pk).exists())],
    )
    writes: list[tuple[str, list[Any]]] = []
    with transaction.atomic():
        event = event_emit(
            type="participant.updated",
            owner=tenants["merchant"].participant,
            livemode=False,
            data={},
            alongside=writes,
        )
    assert (read, writes) == ([True], [])
    assert Event.objects.filter(pk=event.pk).exists()


def test_a_busy_process_sends_what_commits_within_the_linger_in_one_task(
    transactional_db, tenants, sent_tasks, monkeypatch
):
    """An event committed soon after a send waits for the others committed meanwhile; a thread
    of the process's own sends them together, and the committing threads send nothing."""
    monkeypatch.setattr(events_module, "HAND_OFF_LINGER", 0.5)
    monkeypatch.setattr(events_module, "_last_sent", -math.inf)  # idle until now
    owner = tenants["merchant"].participant
    senders: list[str] = []
    recorder = hub.tasks.event_dispatch_many_task

    class Named:
        def apply_async(self, kwargs: dict[str, Any], **options: Any) -> None:
            senders.append(threading.current_thread().name)
            recorder.apply_async(kwargs, **options)

    monkeypatch.setattr(hub.tasks, "event_dispatch_many_task", Named())

    first = emit(owner)  # an idle process: sent at once, by the committing thread
    assert sent_tasks.calls == [("hub.event_dispatch", {"event_id": first.pk}, {})]
    later = [emit(owner).pk for _ in range(3)]
    assert len(sent_tasks.calls) == 1  # they wait for the linger
    wait_for_calls(sent_tasks, 2)

    assert sent_tasks.names() == ["hub.event_dispatch", "hub.event_dispatch_many"]
    assert sent_tasks.calls[1][1]["event_ids"] == later
    assert senders == [events_module._SENDER]
    assert Event.objects.filter(pk__in=[first.pk, *later]).count() == 4


def test_what_waits_for_the_linger_is_sent_at_exit(
    transactional_db, tenants, sent_tasks, monkeypatch
):
    """The process's exit hook sends the events a lingering thread would have sent (a daemon
    thread dies with the process); nothing is sent twice."""
    monkeypatch.setattr(events_module, "HAND_OFF_LINGER", 1.0)
    monkeypatch.setattr(events_module, "_last_sent", -math.inf)  # idle until now
    owner = tenants["merchant"].participant
    emit(owner)
    waiting = [emit(owner).pk for _ in range(2)]
    assert len(sent_tasks.calls) == 1

    events_module.hand_off_flush()  # what atexit runs, and a worker's child as it ends

    assert sent_tasks.calls[1] == ("hub.event_dispatch_many", {"event_ids": waiting}, {})
    # The lingering thread has ended, having found nothing left to send.
    assert not [t for t in threading.enumerate() if t.name == events_module._SENDER]
    assert len(sent_tasks.calls) == 2


def test_a_broker_that_refuses_the_hand_off_fails_no_committed_change(
    transactional_db, api, tenants, sent_tasks, monkeypatch
):
    """The change and its event are committed; the relay sends what the broker refused."""

    recorder = hub.tasks.event_dispatch_task

    class Down:
        def apply_async(self, kwargs: dict[str, Any], **options: Any) -> None:
            raise ConnectionError("broker down")

    monkeypatch.setattr(hub.tasks, "event_dispatch_task", Down())
    operator, merchant = tenants["operator"], tenants["merchant"]

    response = api.post(
        f"/v1/participants/{merchant.id}", {"metadata": {"erp": "sap"}}, key=operator.key
    )

    assert response.status_code == 200, response.content
    event = Event.objects.get()
    assert event.dispatched_at is None
    assert sent_tasks.calls == []
    monkeypatch.setattr(hub.tasks, "event_dispatch_task", recorder)  # the broker is back
    assert webhook_sweep(now=timezone.now() + timedelta(minutes=5)) == (0, 1)
    assert sent_tasks.calls == [("hub.event_dispatch", {"event_id": event.pk}, {})]


def test_one_event_that_fails_to_dispatch_leaves_the_others_dispatched(tenants, monkeypatch):

    merchant = tenants["merchant"]
    make_endpoint(merchant, ["participant.updated"])
    events = [emit(merchant.participant) for _ in range(3)]
    broken = events[1].pk
    real = hub.tasks.event_dispatch

    def dispatch(*, event_id: str) -> int:
        if event_id == broken:
            raise RuntimeError("endpoint table locked")
        return real(event_id=event_id)

    monkeypatch.setattr(hub.tasks, "event_dispatch", dispatch)

    ids = [event.pk for event in events]

    assert hub.tasks.event_dispatch_many_task(event_ids=ids) == 2
    undispatched = Event.objects.filter(pk__in=ids, dispatched_at__isnull=True)
    assert list(undispatched.values_list("pk", flat=True)) == [broken]
