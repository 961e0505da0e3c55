"""The transparency log's scheduled tasks: checkpoints published when the log grew, and the check
that recomputes the stored tree and raises exactly one operator alert when any stored hash or
checkpoint was altered in the database behind the hub's back."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import connection

from hub.models import OperatorTask, TransparencyNode
from hub.tasks_transparency import transparency_check_task, transparency_checkpoint_task
from hub.transparency import merkle
from hub.transparency.log import (
    checkpoint_latest,
    checkpoint_publish,
    log_append,
    log_check,
    log_inclusion_proof,
    transparency_alert,
)
from tests.conftest import is_postgres

pytestmark = pytest.mark.django_db

ALERT = OperatorTask.Kind.TRANSPARENCY_ALERT


def leaves(count: int, start: int = 0) -> list[bytes]:
    return [merkle.leaf_hash(f"receipt {n}".encode()) for n in range(start, start + count)]


def tamper(table: str, statement: str, params: list[Any]) -> None:
    """Change a stored row as someone with the database's keys would: on PostgreSQL, past the
    append-only trigger (inside the test's transaction, so the trigger comes back after it)."""
    trigger = f"{table}_append_only"
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        cursor.execute(statement, params)
        assert cursor.rowcount == 1
        if is_postgres():
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


def a_busy_log(livemode: bool = True) -> None:
    """A log grown in batches with a checkpoint after each."""
    start = 0
    for size in (5, 11, 1, 40, 7):
        log_append(livemode=livemode, leaf_hashes=leaves(size, start))
        start += size
        checkpoint_publish(livemode=livemode)


def alerts() -> list[OperatorTask]:
    return list(OperatorTask.objects.filter(kind=ALERT).order_by("id"))


def test_a_sound_log_raises_no_alert():
    a_busy_log(True)
    a_busy_log(False)

    assert transparency_check_task() == {"live": 0, "test": 0}

    assert alerts() == []
    result = log_check(livemode=True)
    assert (result.ok, result.size, result.checkpoints) == (True, 64, 5)


def test_an_empty_log_checks_out():
    assert transparency_check_task() == {"live": 0, "test": 0}
    transparency_checkpoint_task()
    assert transparency_check_task() == {"live": 0, "test": 0}
    assert alerts() == []


@pytest.mark.parametrize(
    ("level", "position"),
    [(0, 0), (0, 37), (0, 63), (1, 9), (3, 2), (5, 1)],
)
def test_an_altered_node_or_leaf_raises_exactly_one_alert(level, position):
    a_busy_log(True)
    a_busy_log(False)
    tamper(
        "hub_transparencynode",
        "UPDATE hub_transparencynode SET hash = %s "
        "WHERE livemode = %s AND level = %s AND position = %s",
        [merkle.leaf_hash(b"forged"), True, level, position],
    )

    found = transparency_check_task()

    assert found["test"] == 0
    assert found["live"] >= 1
    [alert] = alerts()
    assert alert.livemode is True
    assert alert.participant_id is None
    assert alert.operation_id is None
    assert alert.status == OperatorTask.Status.OPEN
    assert alert.summary == "The live transparency log failed its integrity check."
    assert alert.details["problem_count"] == found["live"]
    assert alert.details["tree_size"] == 64
    assert alert.details["problems"]
    # Checking again finds the same and opens nothing more.
    transparency_check_task()
    assert len(alerts()) == 1


def test_the_last_leaf_of_an_odd_log_has_no_parent_but_is_still_caught():
    log_append(livemode=False, leaf_hashes=leaves(13))
    tamper(
        "hub_transparencynode",
        "UPDATE hub_transparencynode SET hash = %s "
        "WHERE livemode = %s AND level = 0 AND position = 12",
        [merkle.leaf_hash(b"forged"), False],
    )

    assert transparency_check_task() == {"live": 0, "test": 1}
    [alert] = alerts()
    assert alert.details["problems"] == [
        "the log's head root is not the stored tree's root at 13 leaves"
    ]


def test_a_deleted_leaf_is_caught():
    log_append(livemode=True, leaf_hashes=leaves(8))
    tamper(
        "hub_transparencynode",
        "DELETE FROM hub_transparencynode WHERE livemode = %s AND level = 0 AND position = 3",
        [True],
    )

    assert transparency_check_task()["live"] >= 1
    assert len(alerts()) == 1
    assert "level 0 holds 7 nodes where a tree of 8 leaves has 8" in alerts()[0].details["problems"]


def test_an_altered_node_changes_the_proofs_served_and_is_caught():
    hashes = leaves(16)
    log_append(livemode=True, leaf_hashes=hashes)
    checkpoint_publish(livemode=True)
    assert log_inclusion_proof(livemode=True, index=0, size=16) == merkle.inclusion_proof(hashes, 0)
    tamper(
        "hub_transparencynode",
        "UPDATE hub_transparencynode SET hash = %s "
        "WHERE livemode = %s AND level = 2 AND position = 1",
        [bytes(32), True],
    )
    assert log_inclusion_proof(livemode=True, index=0, size=16) != merkle.inclusion_proof(hashes, 0)

    transparency_check_task()

    [alert] = alerts()
    assert "node (2, 1) is not the hash of the two nodes below it" in alert.details["problems"]
    assert "node (3, 0) is not the hash of the two nodes below it" in alert.details["problems"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("note", "forged note\n"),
        ("root_hash", bytes(32)),
        ("tree_size", 3),
        ("key_id", "someone+00000000"),
    ],
)
def test_an_altered_checkpoint_raises_one_alert(column, value):
    a_busy_log(True)
    target = checkpoint_latest(livemode=True)
    assert target is not None
    tamper(
        "hub_checkpoint",
        f"UPDATE hub_checkpoint SET {column} = %s WHERE id = %s",  # noqa: S608
        [value, target.pk],
    )

    assert transparency_check_task()["live"] >= 1

    [alert] = alerts()
    assert any(target.pk in problem for problem in alert.details["problems"])


def test_a_resolved_alert_is_followed_by_a_new_one_when_the_problem_remains():
    log_append(livemode=True, leaf_hashes=leaves(4))
    tamper(
        "hub_transparencynode",
        "UPDATE hub_transparencynode SET hash = %s WHERE livemode = %s AND level = 0 "
        "AND position = 1",
        [bytes(32), True],
    )
    transparency_check_task()
    [first] = alerts()
    OperatorTask.objects.filter(pk=first.pk).update(status=OperatorTask.Status.RESOLVED)

    transparency_check_task()

    assert [a.status for a in alerts()] == ["resolved", "open"]


def test_an_alert_is_logged_and_one_problem_keeps_one_open_task(caplog):
    with caplog.at_level(logging.ERROR, logger="hub.transparency.log"):
        first = transparency_alert(
            livemode=False, summary="receipt rcpt_1 no longer matches its leaf", details={"a": 1}
        )
        again = transparency_alert(
            livemode=False, summary="receipt rcpt_1 no longer matches its leaf", details={"a": 2}
        )
        other = transparency_alert(
            livemode=False, summary="receipt rcpt_2 no longer matches its leaf", details={}
        )
        live = transparency_alert(
            livemode=True, summary="receipt rcpt_1 no longer matches its leaf", details={}
        )

    assert again.pk == first.pk
    assert len({first.pk, other.pk, live.pk}) == 3
    assert OperatorTask.objects.filter(kind=ALERT).count() == 3
    assert [r.levelname for r in caplog.records] == ["ERROR"] * 4
    assert "rcpt_1" in caplog.records[0].getMessage()


def test_operators_see_an_alert_in_their_task_queue(api, tenants):
    transparency_alert(livemode=False, summary="The test transparency log failed.", details={})

    response = api.get("/v1/operator_tasks", key=tenants["operator"].key)

    assert response.status_code == 200, response.content
    [task] = response.json()["data"]
    assert task["kind"] == "transparency_alert"
    assert task["participant"] is None
    assert task["operation"] is None
    assert task["summary"] == "The test transparency log failed."


def test_the_checkpoint_task_publishes_each_grown_log_once():
    made = transparency_checkpoint_task()
    assert len(made) == 2
    assert transparency_checkpoint_task() == made

    log_append(livemode=True, leaf_hashes=leaves(3))
    again = transparency_checkpoint_task()

    assert again[1] == made[1]
    assert again[0] != made[0]
    live = checkpoint_latest(livemode=True)
    assert live is not None
    assert (live.pk, live.tree_size) == (again[0], 3)


def test_the_check_reads_the_log_in_windows_not_all_at_once(monkeypatch):
    from hub.transparency import log

    monkeypatch.setattr(log, "_CHECK_WINDOW", 4)
    monkeypatch.setattr(log, "_CHECK_BATCH", 2)
    a_busy_log(True)
    assert log_check(livemode=True).ok
    tamper(
        "hub_transparencynode",
        "UPDATE hub_transparencynode SET hash = %s WHERE livemode = %s AND level = 1 "
        "AND position = 30",
        [bytes(32), True],
    )
    result = log_check(livemode=True)
    assert result.problems == [
        "node (1, 30) is not the hash of the two nodes below it",
        "node (2, 15) is not the hash of the two nodes below it",
    ]
    assert TransparencyNode.objects.filter(livemode=True).count() == 127
