"""Celery tasks of the transparency log: scheduled checkpoints and the integrity check."""

from __future__ import annotations

from celery import shared_task

from hub.transparency.log import checkpoint_publish, log_check, transparency_alert

MODES = (True, False)


@shared_task(name="hub.transparency_checkpoint")
def transparency_checkpoint_task() -> list[str]:
    """A signed checkpoint of each mode's log, when it has grown since the last one (and a first
    one, of however many leaves, when there is none)."""
    return [checkpoint_publish(livemode=livemode).pk for livemode in MODES]


@shared_task(name="hub.transparency_check")
def transparency_check_task() -> dict[str, int]:
    """Recompute each mode's stored tree and hold it against every checkpoint; any failure is an
    operator alert (one open per log, however many checks failed)."""
    found: dict[str, int] = {}
    for livemode in MODES:
        result = log_check(livemode=livemode)
        mode = "live" if livemode else "test"
        found[mode] = result.problem_count
        if not result.ok:
            transparency_alert(
                livemode=livemode,
                summary=f"The {mode} transparency log failed its integrity check.",
                details={
                    "tree_size": result.size,
                    "checkpoints": result.checkpoints,
                    "problem_count": result.problem_count,
                    "problems": result.problems,
                },
            )
    return found
