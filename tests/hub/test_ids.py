"""hub.ids: prefixed, fixed-width ids that sort by creation time."""

from __future__ import annotations

import pytest

from hub import ids
from hub.ids import IdFactory, is_valid_id, new_id, new_ids


class FakeClock:
    """Stands in for the ``time`` module inside hub.ids: whole milliseconds, moved by the test."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def time_ns(self) -> int:
        return self.ms * 1_000_000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(1_764_000_000_000)
    monkeypatch.setattr(ids, "time", fake)
    monkeypatch.setattr(ids, "_last", 0)  # ids made earlier in this process ran on the real clock
    return fake


def test_prefix_and_fixed_width():
    value = new_id("evt")
    prefix, _, body = value.partition("_")
    assert prefix == "evt"
    assert len(body) == 26
    assert set(body) <= set("0123456789abcdefghjkmnpqrstvwxyz")


@pytest.mark.parametrize("ms", [0, 1, 1_764_000_000_000, 2**48 - 1])
def test_width_is_fixed_for_any_time(monkeypatch, ms):
    monkeypatch.setattr(ids, "time", FakeClock(ms))
    value = new_id("par")
    assert len(value) == len("par_") + 26
    assert is_valid_id("par", value)


def test_ids_are_unique():
    values = {new_id("tr") for _ in range(2000)}
    assert len(values) == 2000


def test_ids_made_later_sort_after(clock):
    made = []
    for step in range(50):
        clock.ms += 1 + step % 3
        made.append(new_id("evt"))
    assert sorted(made) == made


def test_time_dominates_the_random_part(clock, monkeypatch):
    # The earlier id gets the largest random part, the later one the smallest.
    monkeypatch.setattr(ids.secrets, "randbits", lambda bits: 2**bits - 1)
    earlier = new_id("evt")
    clock.ms += 1
    monkeypatch.setattr(ids.secrets, "randbits", lambda bits: 0)
    later = new_id("evt")
    assert earlier < later


def test_the_time_is_readable_from_the_id(clock):
    body = new_id("evt")[4:]
    value = 0
    for char in body:
        value = value * 32 + "0123456789abcdefghjkmnpqrstvwxyz".index(char)
    assert value >> 80 == clock.ms


@pytest.mark.parametrize(
    ("prefix", "value", "valid"),
    [
        ("evt", "evt_01m8hyfjsc8c1a84cs9a19sj43", True),
        ("evt", "par_01m8hyfjsc8c1a84cs9a19sj43", False),  # another type
        ("evt", "evt01m8hyfjsc8c1a84cs9a19sj43", False),  # no separator
        ("evt", "evt_01m8hyfjsc8c1a84cs9a19sj4", False),  # 25 characters
        ("evt", "evt_01m8hyfjsc8c1a84cs9a19sj433", False),  # 27 characters
        ("evt", "evt_01M8HYFJSC8C1A84CS9A19SJ43", False),  # upper case
        ("evt", "evt_01m8hyfjsc8c1a84cs9a19sj4u", False),  # u is not Crockford base32
        ("evt", "evt_01m8hyfjsc8c1a84cs9a19sj4i", False),
        ("evt", "", False),
        ("evt", None, False),
        ("evt", 12, False),
        ("ev", "evt_01m8hyfjsc8c1a84cs9a19sj43", False),
    ],
)
def test_is_valid_id(prefix, value, valid):
    assert is_valid_id(prefix, value) is valid


def test_new_ids_are_valid():
    assert is_valid_id("acct", new_id("acct"))


def test_id_factory_is_a_migration_friendly_default():
    factory = IdFactory("key")
    assert factory().startswith("key_")
    assert factory.deconstruct() == ("hub.ids.IdFactory", ("key",), {})
    assert factory == IdFactory("key")
    assert factory != IdFactory("evt")
    assert hash(factory) == hash(IdFactory("key"))


def test_ids_made_in_the_same_millisecond_sort_in_order(clock, monkeypatch):
    monkeypatch.setattr(ids.secrets, "randbits", lambda bits: 2 ** (bits - 1))
    first = new_id("evt")
    monkeypatch.setattr(ids.secrets, "randbits", lambda bits: 0)
    second = new_id("evt")
    assert first < second
    # The clock stepping back does not break the order either.
    clock.ms -= 5
    assert new_id("evt") > second


def test_ids_made_together_are_consecutive_and_ordered():
    first = new_id("tr")
    batch = new_ids("tr", 1000)
    after = new_id("tr")
    assert len(set(batch)) == 1000
    assert [first, *batch, after] == sorted([first, *batch, after])
    assert all(is_valid_id("tr", value) for value in batch)
