"""The transparency log's part of ``hub bench audit``, run in a process where Django is set up on
the benchmark's database (``python -m bench.audit_log [LEAVES]`` prints one JSON line):

1. ``log_build``: a log of N synthetic leaves made fast: the leaves and every complete subtree
   they make hashed in memory and stored by the same code ``log_append`` uses (a binary ``COPY``
   on PostgreSQL, batched INSERTs elsewhere) in one transaction, then the head set.
2. ``proof_latency``: ``log_inclusion_proof`` of random leaves at the whole log's size against
   the real storage, one call at a time: ``inclusion_p50_ms`` / ``inclusion_p99_ms``, each proof
   verified against the root afterwards (and the same for consistency proofs).
3. ``append_throughput``: ``log_append`` in batches, each its own durable transaction:
   ``append_leaves_per_s`` and the batch latencies.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from typing import Any

TARGET_INCLUSION_P99_MS = 10.0
LEAVES = 1_000_000


def _leaf(n: int, salt: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + salt + n.to_bytes(8, "big")).digest()


def _nearest_rank(sorted_ms: list[float], pct: float) -> float:
    return round(sorted_ms[max(1, math.ceil(pct / 100 * len(sorted_ms))) - 1], 3)


def log_build(*, leaves: int, livemode: bool = False, chunk: int = 1 << 18) -> dict[str, Any]:
    """Append ``leaves`` synthetic leaves to the log of ``livemode`` as one bulk load (in one
    transaction, holding the head's lock), ``chunk`` leaves hashed and copied at a time."""
    from django.db import transaction
    from django.utils import timezone

    from hub.models import TransparencyLog
    from hub.transparency import log

    started = time.perf_counter()
    hashing = loading = 0.0
    rows_written = 0
    with transaction.atomic():
        head = log._head_locked(livemode)
        start = head.size
        keys = log._frontier(start)
        stored = log._fetch(livemode, keys)
        edge = {level: stored[(level, position)] for level, position in keys}
        salt = os.urandom(8)
        size = start
        while size < start + leaves:
            count = min(chunk, start + leaves - size)
            t0 = time.perf_counter()
            rows = log._grow(size, edge, [_leaf(n, salt) for n in range(size, size + count)])
            t1 = time.perf_counter()
            log._insert(livemode, rows)
            loading += time.perf_counter() - t1
            hashing += t1 - t0
            rows_written += len(rows)
            size += count
        TransparencyLog.objects.filter(livemode=livemode).update(
            size=size, root_hash=log._edge_root(edge), updated_at=timezone.now()
        )
    seconds = time.perf_counter() - started
    return {
        "build_leaves": leaves,
        "build_tree_size": size,
        "build_rows": rows_written,
        "build_seconds": round(seconds, 2),
        "build_hash_seconds": round(hashing, 2),
        "build_load_seconds": round(loading, 2),
        "build_leaves_per_s": round(leaves / seconds, 1) if seconds else None,
    }


def proof_latency(*, livemode: bool = False, samples: int = 2000, seed: int = 6) -> dict[str, Any]:
    """Inclusion and consistency proofs at the log's current size, one call at a time, for
    random leaves and old sizes; every proof is checked against the root afterwards."""
    from hub.transparency import merkle
    from hub.transparency.log import (
        log_consistency_proof,
        log_inclusion_proof,
        log_leaf_hashes,
        log_root,
        log_size,
    )

    size = log_size(livemode=livemode)
    if size == 0:
        raise ValueError("the log is empty: build it first")
    root = log_root(livemode=livemode)
    rng = random.Random(seed)
    # A first proof outside the timing: the connection and the statement's plan are made.
    log_inclusion_proof(livemode=livemode, index=0, size=size)
    inclusion_ms: list[float] = []
    made: list[tuple[int, list[bytes]]] = []
    for _ in range(samples):
        index = rng.randrange(size)
        t0 = time.perf_counter()
        proof = log_inclusion_proof(livemode=livemode, index=index, size=size)
        inclusion_ms.append((time.perf_counter() - t0) * 1000)
        made.append((index, proof))
    consistency_ms: list[float] = []
    consistency: list[tuple[int, list[bytes]]] = []
    for _ in range(samples // 4):
        old_size = rng.randint(1, size)
        t0 = time.perf_counter()
        proof = log_consistency_proof(livemode=livemode, old_size=old_size, new_size=size)
        consistency_ms.append((time.perf_counter() - t0) * 1000)
        consistency.append((old_size, proof))
    for index, proof in made:
        [leaf] = log_leaf_hashes(livemode=livemode, start=index, stop=index + 1)
        if not merkle.verify_inclusion(leaf, index, size, proof, root):
            raise AssertionError(f"the inclusion proof of leaf {index} does not verify")
    for old_size, proof in consistency[:50]:
        old_root = log_root(livemode=livemode, size=old_size)
        if not merkle.verify_consistency(old_size, size, old_root, root, proof):
            raise AssertionError(f"the consistency proof from {old_size} does not verify")
    inclusion_ms.sort()
    consistency_ms.sort()
    return {
        "proof_tree_size": size,
        "proof_samples": samples,
        "inclusion_p50_ms": _nearest_rank(inclusion_ms, 50),
        "inclusion_p99_ms": _nearest_rank(inclusion_ms, 99),
        "inclusion_max_ms": round(inclusion_ms[-1], 3),
        "consistency_p50_ms": _nearest_rank(consistency_ms, 50),
        "consistency_p99_ms": _nearest_rank(consistency_ms, 99),
        "inclusion_target_p99_ms": TARGET_INCLUSION_P99_MS,
    }


def append_throughput(
    *, livemode: bool = False, batches: int = 50, batch_size: int = 1000
) -> dict[str, Any]:
    """``batches`` appends of ``batch_size`` leaves, each its own durable transaction."""
    from django.db import transaction

    from hub.transparency.log import log_append

    salt = os.urandom(8)
    work = [[_leaf(b * batch_size + n, salt) for n in range(batch_size)] for b in range(batches)]
    latencies: list[float] = []
    started = time.perf_counter()
    for values in work:
        t0 = time.perf_counter()
        with transaction.atomic(durable=True):
            log_append(livemode=livemode, leaf_hashes=values)
        latencies.append((time.perf_counter() - t0) * 1000)
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "append_batches": batches,
        "append_batch_size": batch_size,
        "append_leaves_per_s": round(batches * batch_size / seconds, 1),
        "append_batch_p50_ms": _nearest_rank(latencies, 50),
        "append_batch_p99_ms": _nearest_rank(latencies, 99),
    }


def main(argv: list[str]) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    leaves = int(argv[0]) if argv else LEAVES
    from hub.transparency.log import log_size

    result: dict[str, Any] = {}
    missing = leaves - log_size(livemode=False)
    if missing > 0:
        result.update(log_build(leaves=missing))
    result.update(proof_latency())
    for batch_size in (1, 100, 1000, 10_000):
        batches = min(1000, max(5, 20_000 // batch_size))
        figures = append_throughput(batches=batches, batch_size=batch_size)
        result[f"append_{batch_size}_leaves_per_s"] = figures["append_leaves_per_s"]
        result[f"append_{batch_size}_batch_p99_ms"] = figures["append_batch_p99_ms"]
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
