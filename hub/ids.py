"""Prefixed, time-ordered object ids: ``evt_01jd3k...``.

48 bits of milliseconds then 80 random bits, in lower-case Crockford base32, fixed width, so that
ids sort by creation time as strings and cursor pagination can page on the id alone.
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_WIDTH = 26  # 130 bits >= 128


# Two characters for each 10-bit group: an id is 13 lookups.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def _encode(value: int) -> str:
    """``value`` (< 2**130) as 26 characters, most significant first."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


_lock = threading.Lock()
_last = 0


def new_id(prefix: str) -> str:
    """Ids made later in this process sort after earlier ones, also within one millisecond: a
    new id in the same millisecond (or after the clock stepped back) is the last one plus one,
    as monotonic ULIDs do. Across processes, ids order by millisecond."""
    global _last
    candidate = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    with _lock:
        if candidate >> 80 <= _last >> 80:
            candidate = _last + 1
        _last = candidate
    return f"{prefix}_{_encode(candidate)}"


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids at once, consecutive and ordered as ``new_id`` would make them."""
    global _last
    candidate = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    with _lock:
        if candidate >> 80 <= _last >> 80:
            candidate = _last + 1
        _last = candidate + count - 1
    return [f"{prefix}_{_encode(candidate + n)}" for n in range(count)]


def is_valid_id(prefix: str, value: object) -> bool:
    if not isinstance(value, str) or not value.startswith(prefix + "_"):
        return False
    body = value[len(prefix) + 1 :]
    return len(body) == _WIDTH and all(c in _ALPHABET for c in body)


class IdFactory:
    """A picklable default for a model's primary key (``default=IdFactory("evt")``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self) -> str:
        return new_id(self.prefix)

    def deconstruct(self) -> tuple[str, tuple[str], dict[str, object]]:
        return ("hub.ids.IdFactory", (self.prefix,), {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdFactory) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)
