"""The transparency log in the database: roots and proofs from storage are byte for byte those of
``hub.transparency.merkle`` at every size, appends in batches leave no gap, concurrent appenders
serialise on the head, and the storage is append-only on PostgreSQL."""

from __future__ import annotations

import hashlib
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import DatabaseError, connection, transaction

from hub import errors
from hub.models import TransparencyLog, TransparencyNode
from hub.transparency import merkle
from hub.transparency.log import (
    LogRangeError,
    log_append,
    log_consistency_proof,
    log_inclusion_proof,
    log_leaf_hashes,
    log_root,
    log_size,
)
from tests.conftest import needs_postgres


def leaves(count: int, *, start: int = 0, salt: str = "") -> list[bytes]:
    return [merkle.leaf_hash(f"{salt}entry {n}".encode()) for n in range(start, start + count)]


@pytest.mark.django_db
def test_an_empty_log_has_the_empty_root():
    assert log_size(livemode=False) == 0
    assert log_root(livemode=False) == merkle.EMPTY_ROOT
    assert log_root(livemode=False, size=0) == merkle.EMPTY_ROOT
    assert log_consistency_proof(livemode=False, old_size=0, new_size=0) == []
    assert log_leaf_hashes(livemode=False, start=0, stop=0) == []


@pytest.mark.django_db
def test_every_root_and_proof_up_to_64_leaves_is_merkles():
    hashes = leaves(64)
    for n, value in enumerate(hashes):
        assert log_append(livemode=False, leaf_hashes=[value]) == n
        assert log_root(livemode=False) == merkle.root_hash(hashes[: n + 1])

    for size in range(65):
        prefix = hashes[:size]
        assert log_root(livemode=False, size=size) == merkle.root_hash(prefix)
        for index in range(size):
            assert log_inclusion_proof(
                livemode=False, index=index, size=size
            ) == merkle.inclusion_proof(prefix, index), (index, size)
        for old_size in range(size + 1):
            assert log_consistency_proof(
                livemode=False, old_size=old_size, new_size=size
            ) == merkle.consistency_proof(prefix, old_size), (old_size, size)
    assert log_leaf_hashes(livemode=False, start=0, stop=64) == hashes
    assert log_leaf_hashes(livemode=False, start=17, stop=40) == hashes[17:40]


@pytest.mark.django_db
def test_batches_of_every_shape_store_the_tree_merkle_keeps():
    rng = random.Random(6)
    hashes: list[bytes] = []
    for size in (1, 2, 3, 7, 1, 64, 129, 1000, 300, 2):
        batch = leaves(size, start=len(hashes))
        assert log_append(livemode=True, leaf_hashes=batch) == len(hashes)
        hashes += batch
    n = len(hashes)
    assert n == 1509
    tree = merkle.MerkleTree(hashes)

    assert log_size(livemode=True) == n
    assert log_root(livemode=True) == merkle.root_hash(hashes)
    # Exactly the complete subtrees: n >> level nodes on each level, each as the tree has it.
    stored = {
        (level, position): bytes(value)
        for level, position, value in TransparencyNode.objects.filter(livemode=True).values_list(
            "level", "position", "hash"
        )
    }
    assert len(stored) == sum(n >> level for level in range(n.bit_length()))
    for (level, position), value in stored.items():
        assert value == tree._complete(level, position)
    for _ in range(300):
        size = rng.randint(1, n)
        index = rng.randrange(size)
        old_size = rng.randint(0, size)
        assert log_inclusion_proof(livemode=True, index=index, size=size) == (
            merkle.inclusion_proof(hashes[:size], index)
        )
        assert log_consistency_proof(livemode=True, old_size=old_size, new_size=size) == (
            merkle.consistency_proof(hashes[:size], old_size)
        )
        assert log_root(livemode=True, size=size) == tree.root(size)
    # The other mode's log is another tree.
    assert log_size(livemode=False) == 0


@pytest.mark.django_db
def test_proofs_at_a_few_thousand_leaves_verify_and_match(django_assert_max_num_queries):
    rng = random.Random(9)
    hashes = leaves(4099, salt="big ")
    for start in range(0, len(hashes), 1000):
        log_append(livemode=False, leaf_hashes=hashes[start : start + 1000])
    tree = merkle.MerkleTree(hashes)
    root = merkle.root_hash(hashes)
    assert log_root(livemode=False) == root
    for _ in range(50):
        index = rng.randrange(len(hashes))
        with django_assert_max_num_queries(2):
            proof = log_inclusion_proof(livemode=False, index=index, size=len(hashes))
        assert proof == tree.inclusion_proof(index)
        assert merkle.verify_inclusion(hashes[index], index, len(hashes), proof, root)
        old_size = rng.randint(1, len(hashes))
        with django_assert_max_num_queries(2):
            consistency = log_consistency_proof(
                livemode=False, old_size=old_size, new_size=len(hashes)
            )
        assert consistency == tree.consistency_proof(old_size)
        assert merkle.verify_consistency(
            old_size, len(hashes), tree.root(old_size), root, consistency
        )


@pytest.mark.django_db
def test_an_append_is_a_handful_of_statements_whatever_the_batch(django_assert_max_num_queries):
    log_append(livemode=False, leaf_hashes=leaves(5))
    with django_assert_max_num_queries(5):
        assert log_append(livemode=False, leaf_hashes=leaves(3000, start=5)) == 5
    with django_assert_max_num_queries(4):
        assert log_append(livemode=False, leaf_hashes=[]) == 3005


@pytest.mark.django_db
def test_an_append_rolled_back_leaves_no_trace():
    log_append(livemode=False, leaf_hashes=leaves(3))

    def fails_after_appending() -> None:
        with transaction.atomic():
            log_append(livemode=False, leaf_hashes=leaves(10, start=3))
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        fails_after_appending()
    assert log_size(livemode=False) == 3
    assert TransparencyNode.objects.filter(livemode=False).count() == 3 + 1
    assert log_append(livemode=False, leaf_hashes=leaves(1, start=3)) == 3
    assert log_root(livemode=False) == merkle.root_hash(leaves(4))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: log_root(livemode=False, size=4), "size"),
        (lambda: log_root(livemode=False, size=-1), "size"),
        (lambda: log_inclusion_proof(livemode=False, index=3, size=3), "index"),
        (lambda: log_inclusion_proof(livemode=False, index=0, size=4), "size"),
        (lambda: log_inclusion_proof(livemode=False, index=-1, size=3), "index"),
        (lambda: log_consistency_proof(livemode=False, old_size=3, new_size=2), "old_size"),
        (lambda: log_consistency_proof(livemode=False, old_size=1, new_size=4), "new_size"),
        (lambda: log_leaf_hashes(livemode=False, start=0, stop=4), "stop"),
        (lambda: log_leaf_hashes(livemode=False, start=2, stop=1), "start"),
        (lambda: log_append(livemode=False, leaf_hashes=[b"short"]), "leaf_hashes"),
        (lambda: log_inclusion_proof(livemode=False, index=True, size=3), "index"),
    ],
)
def test_questions_outside_the_log_are_refused_and_change_nothing(call, param):
    log_append(livemode=False, leaf_hashes=leaves(3))
    before = list(TransparencyNode.objects.values_list("level", "position", "hash"))

    with pytest.raises(LogRangeError) as caught:
        call()

    assert caught.value.param == param
    assert isinstance(caught.value, errors.InvalidRequest)
    assert isinstance(caught.value, ValueError)
    assert caught.value.status == 400
    assert list(TransparencyNode.objects.values_list("level", "position", "hash")) == before
    assert log_size(livemode=False) == 3


@needs_postgres
@pytest.mark.django_db
def test_postgresql_refuses_to_change_or_delete_a_stored_node():
    log_append(livemode=False, leaf_hashes=leaves(4))
    for statement in (
        "UPDATE hub_transparencynode SET hash = %s WHERE level = 0 AND position = 1",
        "DELETE FROM hub_transparencynode WHERE level = 0 AND position = 1 AND hash <> %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, [bytes(32)])
    assert log_leaf_hashes(livemode=False, start=0, stop=4) == leaves(4)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appenders_leave_no_gap_and_no_duplicate():
    threads, batches = 8, 12
    barrier = threading.Barrier(threads)

    def appender(worker: int) -> list[tuple[int, list[bytes]]]:
        rng = random.Random(worker)
        made: list[tuple[int, list[bytes]]] = []
        barrier.wait()
        try:
            for batch in range(batches):
                values = [
                    hashlib.sha256(f"{worker}/{batch}/{n}".encode()).digest()
                    for n in range(rng.randint(1, 40))
                ]
                with transaction.atomic():
                    first = log_append(livemode=True, leaf_hashes=values)
                made.append((first, values))
        finally:
            connection.close()
        return made

    with ThreadPoolExecutor(threads) as pool:
        results = [entry for made in pool.map(appender, range(threads)) for entry in made]

    by_index: dict[int, bytes] = {}
    for first, values in results:
        for offset, value in enumerate(values):
            assert first + offset not in by_index
            by_index[first + offset] = value
    size = len(by_index)
    assert sorted(by_index) == list(range(size))
    hashes = [by_index[n] for n in range(size)]
    assert log_size(livemode=True) == size
    assert log_leaf_hashes(livemode=True, start=0, stop=size) == hashes
    assert log_root(livemode=True) == merkle.root_hash(hashes)
    assert TransparencyLog.objects.get(livemode=True).size == size
    assert TransparencyNode.objects.filter(livemode=True).count() == sum(
        size >> level for level in range(size.bit_length())
    )
