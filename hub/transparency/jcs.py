"""RFC 8785 JSON Canonicalization Scheme (JCS): one byte string for every JSON value.

A receipt is signed and hashed as ``canonicalize(receipt)``, so anyone holding the receipt's JSON
can rebuild the exact bytes with any RFC 8785 implementation (Go, Java, JavaScript, Rust, Python)
and check the signature and the log's leaf hash without trusting this code.

The rules (RFC 8785 section 3.2):

- no whitespace between tokens;
- object members sorted by their names compared as arrays of UTF-16 code units, not code points
  (the two orders differ for characters above U+FFFF against U+E000..U+FFFF);
- strings as ECMAScript's ``JSON.stringify`` writes them: ``\\"``, ``\\\\``, ``\\b``, ``\\t``,
  ``\\n``, ``\\f``, ``\\r``, other controls below U+0020 as ``\\u00xx`` in lower-case hex, every
  other character (``/``, U+007F, non-ASCII) as itself in UTF-8;
- numbers as ECMAScript's Number-to-String: the shortest decimal digits that round-trip the IEEE
  754 double, written plainly from 1e-6 up to 1e21 and with an exponent (``1e+21``, ``1e-7``)
  outside; ``-0`` is ``0``.

Python values map to JSON as ``json`` maps them: dict (string keys only), list or tuple, str,
int, float, bool and None. Anything else, NaN and the infinities, integers beyond 2**53 in
magnitude that a double would change (parsers would round them; send such numbers as
strings), and strings that are not valid Unicode (lone surrogates) are
refused with ``TypeError`` or ``ValueError``.

Pure Python, standard library only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

__all__ = ["MAX_SAFE_INTEGER", "canonicalize", "canonicalize_plain", "number_to_string"]

MAX_SAFE_INTEGER = 2**53
"""Every integer up to this magnitude is exactly one IEEE 754 double; beyond, only some are."""

_MAX_DEPTH = 200
"""Nesting allowed for arrays and objects; deeper input is refused rather than overflowing."""

# json.dumps with ensure_ascii=False writes exactly JSON.stringify's escapes: '"', '\\', the five
# short forms and \u00xx (lower-case) for the remaining controls; nothing else is escaped.
_encode_string = json.JSONEncoder(ensure_ascii=False).encode


def canonicalize(value: object) -> bytes:
    """The RFC 8785 canonical form of ``value``, as UTF-8 bytes.

    Raises ``TypeError`` for a value (or dict key) of a type JSON has no form for, and
    ``ValueError`` for NaN, an infinity, an integer beyond 2**53 in magnitude that a double
    would change, a string that is not valid Unicode, or nesting deeper than 200 levels.
    """
    if _plain(value):
        # Without floats and with keys inside the Basic Multilingual Plane (where code point
        # order is UTF-16 order), the standard encoder writes exactly the canonical form.
        text = _encode_plain(value)
    else:
        parts: list[str] = []
        _write(value, parts, 0)
        text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("a string is not valid Unicode (lone surrogate)") from exc


_encode_plain = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False
).encode
_BMP_END = "\U00010000"


def canonicalize_plain(value: object) -> bytes:
    """``canonicalize`` for a value its caller built plain: dicts with keys inside the Basic
    Multilingual Plane, lists, strings, booleans, None and integers within 2**53, nothing else
    (not even a ``str`` subclass such as an enum member). The check ``canonicalize`` makes costs
    more than the encoding; a caller that signs many such values skips it, and its tests show
    that ``canonicalize`` gives the same bytes."""
    return _encode_plain(value).encode("utf-8")


def _plain(value: object) -> bool:
    """True when ``value`` holds only what ``_encode_plain`` writes canonically.

    Iterative, and checking scalars in place, because it runs for every receipt signed.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        container, depth = stack.pop()
        kind = type(container)
        members: Iterable[object]
        if kind is dict:
            members = container.values()  # type: ignore[attr-defined]
            for key in container:  # type: ignore[attr-defined]
                if type(key) is not str or (key and max(key) >= _BMP_END):
                    return False
        elif kind is list or kind is tuple:
            members = container  # type: ignore[assignment]
        else:
            members = (container,)
            depth -= 1
        if depth >= _MAX_DEPTH:
            return False
        for member in members:
            kind = type(member)
            if kind is str or kind is bool or member is None:
                continue
            if kind is int:
                if not -MAX_SAFE_INTEGER <= member <= MAX_SAFE_INTEGER:  # type: ignore[operator]
                    return False
            elif kind is dict or kind is list or kind is tuple:
                stack.append((member, depth + 1))
            else:
                return False
    return True


def _write(value: object, out: list[str], depth: int) -> None:
    # bool before int: True is an int in Python but a literal in JSON.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(number_to_string(value))
    elif isinstance(value, dict):
        if depth >= _MAX_DEPTH:
            raise ValueError(f"nesting deeper than {_MAX_DEPTH} levels")
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, not {type(key).__name__}")
        # Big-endian UTF-16 bytes compare exactly as the sequences of code units do.
        members = sorted(value.items(), key=lambda item: _utf16_key(item[0]))
        out.append("{")
        for position, (key, member) in enumerate(members):
            if position:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _write(member, out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        if depth >= _MAX_DEPTH:
            raise ValueError(f"nesting deeper than {_MAX_DEPTH} levels")
        out.append("[")
        for position, element in enumerate(value):
            if position:
                out.append(",")
            _write(element, out, depth + 1)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} has no JSON form")


def _utf16_key(name: str) -> bytes:
    # surrogatepass lets a lone surrogate sort; canonicalize refuses it when encoding to UTF-8.
    return name.encode("utf-16-be", "surrogatepass")


def _integer(value: int) -> str:
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        # Within 2**53 the double is exact and ES writes it without exponent (it is < 1e21).
        return int.__repr__(value)  # not an IntEnum's own str()
    # Beyond, a JSON number is the nearest double (RFC 8785 section 3.2.2.3). The integer is
    # accepted when that loses nothing: it is exactly a double, or it is the very spelling
    # ES gives that double (the canonical form of the float 3.769253219430769e16 is
    # 37692532194307690, which reads back in Python as an int and must give the same bytes).
    # Any other integer would be silently changed, so it is refused.
    try:
        nearest = float(value)
    except OverflowError:
        nearest = math.inf
    if math.isfinite(nearest):
        text = number_to_string(nearest)
        if int(nearest) == value or text == int.__repr__(value):
            return text
    raise ValueError(
        f"integer {value} is beyond 2**53 and a double would change it; send it as a string"
    )


def number_to_string(value: float) -> str:
    """ECMAScript Number::toString(value) for a finite double (ECMA-262 6.1.6.1.20).

    Python's ``repr`` already gives the shortest digits that round-trip (correctly rounded,
    ties to even, as ES requires); only the layout differs.
    """
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{value!r} is not a JSON number")
    if value == 0:
        return "0"  # both 0.0 and -0.0
    if value < 0:
        return "-" + number_to_string(-value)
    mantissa, _, exp_text = float.__repr__(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    stripped = digits.rstrip("0")
    # value = int(stripped) * 10**(exponent)
    exponent = int(exp_text or "0") - len(fraction) + (len(digits) - len(stripped))
    s = stripped
    k = len(s)
    n = exponent + k  # the position of the decimal point relative to the digits
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + s
    e = n - 1
    sign = "+" if e >= 0 else "-"
    if k == 1:
        return f"{s}e{sign}{abs(e)}"
    return f"{s[0]}.{s[1:]}e{sign}{abs(e)}"
