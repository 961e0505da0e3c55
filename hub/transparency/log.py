"""The transparency log of each mode, stored in the database: appends, roots, proofs, checkpoints
and the integrity check.

Storage (``hub.models.transparency``) keeps the hash of every complete power-of-two subtree, as
``hub.transparency.merkle.MerkleTree`` does in memory: level 0 the leaf hashes, level ``h`` the
roots of leaves ``[i * 2**h, (i + 1) * 2**h)``. Every subtree the RFC 6962 recursion visits, in a
tree of any size the log has reached, is a run of at most log2(n) such complete subtrees, so a
root, an inclusion proof or a consistency proof needs only the O(log n) stored hashes this module
works out first and then fetches in one indexed query. Proofs are byte for byte those of
``merkle.inclusion_proof`` and ``merkle.consistency_proof``.

``log_append`` locks the head row of the log (its size and root), reads the right edge of the
tree (at most log2(n) nodes), hashes the new leaves in and inserts the leaves and every node they
complete in one statement: one lock and four statements per batch, whatever its size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from hub import errors
from hub.conf import hub_settings
from hub.fastinsert import copy_rows
from hub.models import Checkpoint, OperatorTask, SigningKey, TransparencyLog, TransparencyNode
from hub.transparency import checkpoint as notes
from hub.transparency.merkle import EMPTY_ROOT, HASH_SIZE, node_hash, verify_consistency

__all__ = [
    "CheckResult",
    "LogRangeError",
    "checkpoint_at",
    "checkpoint_latest",
    "checkpoint_publish",
    "checkpoints_list",
    "log_append",
    "log_check",
    "log_consistency_proof",
    "log_inclusion_proof",
    "log_leaf_hashes",
    "log_origin",
    "log_root",
    "log_size",
    "transparency_alert",
]

logger = logging.getLogger(__name__)

Key = tuple[int, int]  # (level, position) of a complete subtree

_NODES = "hub_transparencynode"  # TransparencyNode._meta.db_table
_HEAD = "SELECT size, root_hash FROM hub_transparencylog WHERE livemode = %s"
_READ_PG = (
    "SELECT -1, size, root_hash FROM hub_transparencylog WHERE livemode = %s UNION ALL "
    "SELECT n.level, n.position, n.hash FROM unnest(%s::int2[], %s::int8[]) AS k(l, p) "
    "JOIN hub_transparencynode n ON n.livemode = %s AND n.level = k.l AND n.position = k.p"
)


class LogRangeError(errors.InvalidRequest, ValueError):
    """A size or index outside the log (or out of order): a caller's error, never a 500."""

    code = "parameter_invalid"


def log_origin(*, livemode: bool) -> str:
    """The checkpoint origin of a mode's log: ``TRANSPARENCY_ORIGIN`` + ``/live`` or ``/test``."""
    return hub_settings.TRANSPARENCY_ORIGIN + ("/live" if livemode else "/test")


# -- which complete subtrees a question needs -------------------------------------------------


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2), as RFC 6962 2.1 uses it."""
    return 1 << ((n - 1).bit_length() - 1)


def _pieces(lo: int, hi: int) -> list[Key]:
    """The complete subtrees D[lo:hi] splits into (lo aligned as the RFC recursion leaves it),
    largest first: one per set bit of hi - lo."""
    n = hi - lo
    keys: list[Key] = []
    offset = lo
    for height in range(n.bit_length() - 1, -1, -1):
        if n >> height & 1:
            keys.append((height, offset >> height))
            offset += 1 << height
    return keys


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees whose roots make PATH(index, D[size]), deepest first (RFC 9162 2.1.3.1)."""
    ranges: list[tuple[int, int]] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            m -= k
    ranges.reverse()
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The subtrees whose roots make PROOF(old_size, D[new_size]) (RFC 9162 2.1.4.1), for
    0 < old_size < new_size."""
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, new_size, old_size, True
    while True:
        if m == hi - lo:
            if not whole:
                ranges.append((lo, hi))
            break
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    ranges.reverse()
    return ranges


def _fold(keys: Sequence[Key], nodes: dict[Key, bytes]) -> bytes:
    """The root of a run of complete subtrees (largest first), folded from the right."""
    root = nodes[keys[-1]]
    for key in reversed(keys[:-1]):
        root = node_hash(nodes[key], root)
    return root


def _frontier(size: int) -> list[Key]:
    """The complete subtrees of the whole tree of ``size`` leaves, largest first: the right edge
    that the next leaves are hashed onto."""
    return _pieces(0, size)


# -- reading stored nodes --------------------------------------------------------------------


def _read(livemode: bool, keys: Iterable[Key]) -> tuple[int, bytes, dict[Key, bytes]]:
    """The log's size and root and the stored hashes of these complete subtrees (those that
    exist), in one round trip."""
    wanted = sorted(set(keys))
    if connection.vendor == "postgresql":
        # A prepared statement, one text whatever the number of keys: PostgreSQL plans it once
        # per connection (a nested loop of primary-key lookups) instead of on every proof.
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(
                _READ_PG,
                [livemode, [k[0] for k in wanted], [k[1] for k in wanted], livemode],
                prepare=True,
            )
            rows = cursor.fetchall()
    else:
        with connection.cursor() as cursor:
            cursor.execute(_HEAD, [livemode])
            rows = [(-1, size, root) for size, root in cursor.fetchall()]
            if wanted:
                values = ", ".join(["(%s, %s)"] * len(wanted))
                cursor.execute(
                    f"SELECT level, position, hash FROM {_NODES} "  # noqa: S608
                    f"WHERE livemode = %s AND (level, position) IN (VALUES {values})",
                    [livemode, *[part for key in wanted for part in key]],
                )
                rows += cursor.fetchall()
    size, root = 0, EMPTY_ROOT
    found: dict[Key, bytes] = {}
    for level, position, value in rows:
        if level < 0:
            size, root = int(position), bytes(value)
        else:
            found[(level, position)] = bytes(value)
    return size, root, found


def _complete(livemode: bool, keys: Iterable[Key], found: dict[Key, bytes]) -> dict[Key, bytes]:
    missing = sorted(set(keys) - set(found))
    if missing:
        raise RuntimeError(f"transparency log ({livemode=}) is missing stored nodes {missing[:5]}")
    return found


def _fetch(livemode: bool, keys: Sequence[Key]) -> dict[Key, bytes]:
    """The stored hashes of these complete subtrees, every one of which must exist."""
    if not keys:
        return {}
    return _complete(livemode, keys, _read(livemode, keys)[2])


def _head(livemode: bool) -> TransparencyLog:
    head = TransparencyLog.objects.filter(livemode=livemode).first()
    return head if head is not None else TransparencyLog(livemode=livemode)


def _head_locked(livemode: bool) -> TransparencyLog:
    """The log's head, locked until the end of the transaction (made on first use)."""
    rows = list(TransparencyLog.objects.select_for_update().filter(livemode=livemode))
    if not rows:
        # Two first appenders both insert; the second waits on the first's row, then does nothing.
        TransparencyLog.objects.bulk_create(
            [TransparencyLog(livemode=livemode)], ignore_conflicts=True
        )
        rows = list(TransparencyLog.objects.select_for_update().filter(livemode=livemode))
    return rows[0]


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LogRangeError(f"{name} must be a non-negative integer.", param=name)
    return value


# -- the services ----------------------------------------------------------------------------


def log_size(*, livemode: bool) -> int:
    """The number of leaves in the log (0 before the first append)."""
    return _read(livemode, ())[0]


def log_root(*, livemode: bool, size: int | None = None) -> bytes:
    """MTH of the first ``size`` leaves (default: the whole log), as ``merkle.root_hash``."""
    if size is not None:
        _check_int("size", size)
    keys = _pieces(0, size) if size else []
    current, root, found = _read(livemode, keys)
    if size is None or size == current:
        return root
    if size > current:
        raise LogRangeError(f"size {size} is larger than the log ({current}).", param="size")
    if size == 0:
        return EMPTY_ROOT
    return _fold(keys, _complete(livemode, keys, found))


def log_inclusion_proof(*, livemode: bool, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]): the audit path of leaf ``index`` in the tree of the first ``size``
    leaves, exactly as ``merkle.inclusion_proof`` gives it. One query."""
    _check_int("index", index)
    _check_int("size", size)
    if index >= size:
        raise LogRangeError(f"index {index} is outside a tree of {size} leaves.", param="index")
    runs = [_pieces(lo, hi) for lo, hi in _inclusion_ranges(index, size)]
    keys = [key for run in runs for key in run]
    current, _, found = _read(livemode, keys)
    if size > current:
        raise LogRangeError(f"size {size} is larger than the log ({current}).", param="size")
    nodes = _complete(livemode, keys, found)
    return [_fold(run, nodes) for run in runs]


def log_consistency_proof(*, livemode: bool, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]), exactly as ``merkle.consistency_proof`` gives it (empty
    when ``old_size`` is 0 or equals ``new_size``). One query."""
    _check_int("old_size", old_size)
    _check_int("new_size", new_size)
    if old_size > new_size:
        raise LogRangeError(
            f"old_size {old_size} is larger than new_size {new_size}.", param="old_size"
        )
    trivial = old_size in (0, new_size)
    runs = (
        [] if trivial else [_pieces(lo, hi) for lo, hi in _consistency_ranges(old_size, new_size)]
    )
    keys = [key for run in runs for key in run]
    current, _, found = _read(livemode, keys)
    if new_size > current:
        raise LogRangeError(
            f"new_size {new_size} is larger than the log ({current}).", param="new_size"
        )
    nodes = _complete(livemode, keys, found)
    return [_fold(run, nodes) for run in runs]


def log_leaf_hashes(*, livemode: bool, start: int, stop: int) -> list[bytes]:
    """The leaf hashes at indices ``start`` to ``stop - 1``, in order."""
    _check_int("start", start)
    _check_int("stop", stop)
    current = log_size(livemode=livemode)
    if stop > current:
        raise LogRangeError(f"stop {stop} is beyond the log ({current}).", param="stop")
    if start > stop:
        raise LogRangeError(f"start {start} is after stop {stop}.", param="start")
    rows = (
        TransparencyNode.objects.filter(
            livemode=livemode, level=0, position__gte=start, position__lt=stop
        )
        .order_by("position")
        .values_list("hash", flat=True)
    )
    return [bytes(value) for value in rows]


def _grow(
    size: int, edge: dict[int, bytes], leaves: Sequence[bytes]
) -> list[tuple[int, int, bytes]]:
    """The nodes (level, position, hash) that appending ``leaves`` to a tree of ``size`` leaves
    stores: each leaf, and every subtree it completes. ``edge`` (level -> hash of the tree's
    complete subtree of that height on the right edge) is updated in place."""
    rows: list[tuple[int, int, bytes]] = []
    add = rows.append
    index = size
    for value in leaves:
        add((0, index, value))
        level, position, carry = 0, index, value
        # An odd position closes a pair: its parent subtree is complete, and so on upwards.
        while position & 1:
            carry = node_hash(edge.pop(level), carry)
            level += 1
            position >>= 1
            add((level, position, carry))
        edge[level] = carry
        index += 1
    return rows


def _edge_root(edge: dict[int, bytes]) -> bytes:
    if not edge:
        return EMPTY_ROOT
    levels = sorted(edge)
    root = edge[levels[0]]
    for level in levels[1:]:
        root = node_hash(edge[level], root)
    return root


def _insert(livemode: bool, rows: Sequence[tuple[int, int, bytes]]) -> None:
    """Store new nodes (a binary COPY on PostgreSQL: the rows never pass through SQL text)."""
    copy_rows(
        TransparencyNode,
        ("livemode", "level", "position", "hash"),
        ("bool", "int2", "int8", "bytea"),
        ((livemode, level, position, value) for level, position, value in rows),
    )


def log_append(*, livemode: bool, leaf_hashes: Sequence[bytes]) -> int:
    """Append the leaf hashes, in order, to the log of ``livemode`` and return the index of the
    first. Runs in the caller's transaction (or its own): appenders wait for each other on the
    log's head row until the appender before them commits or rolls back."""
    leaves = [bytes(value) for value in leaf_hashes]
    for position, value in enumerate(leaves):
        if len(value) != HASH_SIZE:
            raise LogRangeError(
                f"leaf hash {position} is not {HASH_SIZE} bytes.", param="leaf_hashes"
            )
    with transaction.atomic(savepoint=False):
        head = _head_locked(livemode)
        start = head.size
        if not leaves:
            return start
        keys = _frontier(start)
        stored = _fetch(livemode, keys)
        edge = {level: stored[(level, position)] for level, position in keys}
        rows = _grow(start, edge, leaves)
        _insert(livemode, rows)
        TransparencyLog.objects.filter(livemode=livemode).update(
            size=start + len(leaves), root_hash=_edge_root(edge), updated_at=timezone.now()
        )
    return start


# -- checkpoints -----------------------------------------------------------------------------


def checkpoint_publish(*, livemode: bool, force: bool = False) -> Checkpoint:
    """Sign and store a checkpoint of the log as it is now. Without ``force`` nothing new is
    made while the log has not grown since the latest checkpoint: that one is returned."""
    from hub.transparency.keys import signing_key_active

    key = signing_key_active()
    with transaction.atomic():
        # Holding the head keeps appends out while the size, root and time are taken together.
        head = _head_locked(livemode)
        latest = checkpoint_latest(livemode=livemode)
        if latest is not None and latest.tree_size == head.size and not force:
            return latest
        now = timezone.now().replace(microsecond=0)
        if latest is not None and now <= latest.timestamp:
            now = latest.timestamp  # never earlier than the checkpoint before it
        body = notes.checkpoint_body(
            origin=log_origin(livemode=livemode),
            size=head.size,
            root=bytes(head.root_hash),
            timestamp=now,
        )
        note = notes.sign_note(body, name=key.name, private_key=key.private_key)
        return Checkpoint.objects.create(
            livemode=livemode,
            tree_size=head.size,
            root_hash=bytes(head.root_hash),
            timestamp=now,
            key_id=key.key_id,
            note=note,
        )


def checkpoint_latest(*, livemode: bool) -> Checkpoint | None:
    """The most recent checkpoint of the log, if any was published."""
    return Checkpoint.objects.filter(livemode=livemode).order_by("-id").first()


def checkpoint_at(*, livemode: bool, tree_size: int) -> Checkpoint | None:
    """The most recent checkpoint published at exactly ``tree_size`` leaves, if any."""
    return Checkpoint.objects.filter(livemode=livemode, tree_size=tree_size).order_by("-id").first()


def checkpoints_list(*, livemode: bool) -> QuerySet[Checkpoint]:
    """Every checkpoint of the log, ordered by id (oldest first; ids sort by time), for cursor
    pagination on the id."""
    return Checkpoint.objects.filter(livemode=livemode).order_by("id")


# -- the integrity check ---------------------------------------------------------------------

_CHECK_WINDOW = 1 << 14  # parent nodes recomputed per pair of range queries
_CHECK_BATCH = 256  # checkpoints whose roots are fetched in one query
_PROBLEMS_KEPT = 50


@dataclass
class CheckResult:
    """What ``log_check`` found: ``problems`` (the first few, in words) and how many in all."""

    livemode: bool
    size: int
    checkpoints: int
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < _PROBLEMS_KEPT:
            self.problems.append(message)


def _range(livemode: bool, level: int, start: int, stop: int) -> dict[int, bytes]:
    rows = TransparencyNode.objects.filter(
        livemode=livemode, level=level, position__gte=start, position__lt=stop
    ).values_list("position", "hash")
    return {position: bytes(value) for position, value in rows}


def _level_counts(livemode: bool) -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT level, COUNT(*) FROM {_NODES} WHERE livemode = %s GROUP BY level",  # noqa: S608
            [livemode],
        )
        return {int(level): int(count) for level, count in cursor.fetchall()}


def _check_tree(livemode: bool, size: int, result: CheckResult) -> None:
    """Each level holds exactly its complete subtrees, and every stored node is the hash of the
    two below it: the stored tree is the one its leaves make."""
    counts = _level_counts(livemode)
    for level in sorted(set(counts) | set(range(size.bit_length()))):
        expected = size >> level
        if counts.get(level, 0) != expected:
            result.add(
                f"level {level} holds {counts.get(level, 0)} nodes where a tree of {size} leaves "
                f"has {expected}"
            )
    for level in range(1, size.bit_length()):
        parents = size >> level
        for start in range(0, parents, _CHECK_WINDOW):
            stop = min(parents, start + _CHECK_WINDOW)
            below = _range(livemode, level - 1, 2 * start, 2 * stop)
            stored = _range(livemode, level, start, stop)
            for position in range(start, stop):
                left, right = below.get(2 * position), below.get(2 * position + 1)
                value = stored.get(position)
                if value is None or left is None or right is None:
                    result.add(f"node ({level}, {position}) or a node below it is missing")
                elif node_hash(left, right) != value:
                    result.add(
                        f"node ({level}, {position}) is not the hash of the two nodes below it"
                    )


def _note_fields(note: str) -> tuple[str, int, bytes] | None:
    try:
        parsed = notes.parse_checkpoint(note)
    except ValueError:
        return None
    return parsed.origin, parsed.size, parsed.root


def _check_checkpoints(livemode: bool, size: int, result: CheckResult) -> None:
    """Each checkpoint is signed by a known key over its own fields, its root is the stored
    tree's at its size, and it is consistent with the checkpoint before it."""
    origin = log_origin(livemode=livemode)
    vkeys = {row.key_id: row.vkey for row in SigningKey.objects.all()}
    previous: Checkpoint | None = None
    rows = Checkpoint.objects.filter(livemode=livemode).order_by("id")
    batch: list[Checkpoint] = []

    def check(batch: list[Checkpoint], previous: Checkpoint | None) -> Checkpoint | None:
        known = [c for c in batch if c.tree_size <= size]
        runs = {c.tree_size: _pieces(0, c.tree_size) for c in known if c.tree_size > 0}
        nodes = _fetch(livemode, [key for run in runs.values() for key in run])
        for chk in batch:
            root = bytes(chk.root_hash)
            if chk.tree_size > size:
                result.add(f"checkpoint {chk.pk} is of {chk.tree_size} leaves; the log has {size}")
            elif (_fold(runs[chk.tree_size], nodes) if chk.tree_size else EMPTY_ROOT) != root:
                result.add(f"checkpoint {chk.pk}: the stored tree has another root at its size")
            vkey = vkeys.get(chk.key_id)
            if vkey is None or not notes.verify_note(chk.note, vkey=vkey):
                result.add(f"checkpoint {chk.pk}: the signature does not verify")
            elif _note_fields(chk.note) != (origin, chk.tree_size, root):
                result.add(f"checkpoint {chk.pk}: its signed note says otherwise")
            if previous is not None:
                if chk.tree_size < previous.tree_size:
                    result.add(f"checkpoint {chk.pk} is smaller than {previous.pk} before it")
                elif chk.tree_size <= size and not verify_consistency(
                    previous.tree_size,
                    chk.tree_size,
                    bytes(previous.root_hash),
                    root,
                    log_consistency_proof(
                        livemode=livemode,
                        old_size=previous.tree_size,
                        new_size=chk.tree_size,
                    ),
                ):
                    result.add(f"checkpoint {chk.pk} is not consistent with {previous.pk}")
            previous = chk
        return previous

    for chk in rows.iterator(chunk_size=_CHECK_BATCH):
        result.checkpoints += 1
        batch.append(chk)
        if len(batch) == _CHECK_BATCH:
            previous = check(batch, previous)
            batch = []
    if batch:
        check(batch, previous)


def log_check(*, livemode: bool) -> CheckResult:
    """Recompute the stored tree of a mode's log from its leaves and hold it against the head
    and every checkpoint published over it. Reads the whole log: a scheduled task's work."""
    head = _head(livemode)
    size = head.size
    result = CheckResult(livemode=livemode, size=size, checkpoints=0)
    _check_tree(livemode, size, result)
    if result.ok:
        keys = _pieces(0, size)
        root = _fold(keys, _fetch(livemode, keys)) if size else EMPTY_ROOT
        if root != bytes(head.root_hash):
            result.add(f"the log's head root is not the stored tree's root at {size} leaves")
        _check_checkpoints(livemode, size, result)
    else:
        # With the tree itself wrong, roots taken from it say nothing more; the signatures do.
        _check_checkpoints_signatures(livemode, result)
    return result


def _check_checkpoints_signatures(livemode: bool, result: CheckResult) -> None:
    vkeys = {row.key_id: row.vkey for row in SigningKey.objects.all()}
    for chk in Checkpoint.objects.filter(livemode=livemode).order_by("id").iterator():
        result.checkpoints += 1
        vkey = vkeys.get(chk.key_id)
        if vkey is None or not notes.verify_note(chk.note, vkey=vkey):
            result.add(f"checkpoint {chk.pk}: the signature does not verify")


# -- alerts ----------------------------------------------------------------------------------


def transparency_alert(*, livemode: bool, summary: str, details: dict[str, Any]) -> OperatorTask:
    """An operator alert about the log of ``livemode``: an ERROR in the log each time, and an
    open operator task. The summary names the problem: while a task with the same summary is
    open in the mode, no second one is made and that one is returned."""
    summary = summary[:300]
    logger.error("transparency log (%s): %s %s", "live" if livemode else "test", summary, details)
    with transaction.atomic():
        task, _ = OperatorTask.objects.get_or_create(
            kind=OperatorTask.Kind.TRANSPARENCY_ALERT,
            status=OperatorTask.Status.OPEN,
            livemode=livemode,
            summary=summary,
            defaults={"details": details},
        )
    return task
