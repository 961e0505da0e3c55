"""RFC 8785 canonical JSON against the RFC's own examples: the Appendix B number table, the
section 3.2.2 example, the section 3.2.3 sorting example and JSON.stringify's string escapes;
refusals for what has no canonical form; round trips of random values."""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from decimal import Decimal
from enum import IntEnum, StrEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.transparency import jcs
from hub.transparency.jcs import MAX_SAFE_INTEGER, canonicalize, number_to_string

# RFC 8785 Appendix B: IEEE 754 bit patterns and their required serialisations.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),  # min pos number
    ("8000000000000001", "-5e-324"),  # min neg number
    ("7fefffffffffffff", "1.7976931348623157e+308"),  # max pos number
    ("ffefffffffffffff", "-1.7976931348623157e+308"),  # max neg number
    ("4340000000000000", "9007199254740992"),  # max pos int
    ("c340000000000000", "-9007199254740992"),  # max neg int
    ("4430000000000000", "295147905179352830000"),  # ~2**68
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),  # exactly ...206.25: round half to even
]


def _double(bits: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(bits))[0])


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_appendix_b_numbers(bits: str, expected: str) -> None:
    value = _double(bits)
    assert number_to_string(value) == expected
    assert canonicalize(value) == expected.encode()
    assert canonicalize([value]) == f"[{expected}]".encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_appendix_b_nan_and_infinity_are_refused(bits: str) -> None:
    with pytest.raises(ValueError, match="not a JSON number"):
        canonicalize({"n": _double(bits)})


def test_section_3_2_2_example() -> None:
    text = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    result = canonicalize(json.loads(text))
    assert result == expected.encode("utf-8")
    # Section 3.2.4: the output is UTF-8 (the euro sign as e2 82 ac), never \u escaped.
    assert result.hex(" ").startswith(
        "7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72 75 65 2c 66 61 6c 73 65 5d"
    )
    assert bytes.fromhex("22 e2 82 ac 24 5c 75 30 30 30 66 5c 6e 41 27 42") in result


def test_section_3_2_3_sorting_by_utf16_code_units() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    result = json.loads(canonicalize(value))
    # The RFC's order: the emoji's surrogate pair (d83d) sorts before U+FB33, unlike code points.
    assert list(result.values()) == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    assert sorted(value) != list(result)  # plain code-point order would differ
    assert canonicalize(value).startswith(b'{"\\r":"Carriage Return","1":"One","\xc2\x80":')


def test_reference_weird_keys() -> None:
    # The reference implementation's "weird" vector: U+007F and U+0080 are written as themselves.
    value = {
        "\u20ac": "Euro Sign",
        "1": "One",
        "\u0080": "Control\u007f",
        "\U0001f602": "Smiley",
        "\u00f6": "Latin Small Letter O With Diaeresis",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "</script>": "Browser Challenge",
    }
    expected = (
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonicalize(value) == expected.encode("utf-8")


SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


@pytest.mark.parametrize("code", range(0x20))
def test_control_characters_are_escaped_as_json_stringify_does(code: int) -> None:
    expected = SHORT_ESCAPES.get(code, f"\\u{code:04x}")
    assert canonicalize(chr(code)) == f'"{expected}"'.encode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"', '"\\""'),
        ("\\", '"\\\\"'),
        ("/", '"/"'),
        ("\u007f", '"\u007f"'),
        ("<&>'", '"<&>\'"'),
        ("\u2028\u2029", '"\u2028\u2029"'),
        ("한국어 中文 \U0001f600", '"한국어 中文 \U0001f600"'),
        ("", '""'),
    ],
)
def test_other_characters_are_written_as_themselves(text: str, expected: str) -> None:
    assert canonicalize(text) == expected.encode("utf-8")


def test_lower_case_hex_in_unicode_escapes() -> None:
    assert canonicalize("\x1f\x0b") == b'"\\u001f\\u000b"'


def test_literals_integers_and_structure() -> None:
    value = {
        "b": [1, 2.0, -0.0, True, False, None, "x"],
        "a": {"z": {}, "y": []},
        "c": (1, 2),
    }
    assert canonicalize(value) == b'{"a":{"y":[],"z":{}},"b":[1,2,0,true,false,null,"x"],"c":[1,2]}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (-1, "-1"),
        (150000, "150000"),
        (MAX_SAFE_INTEGER, "9007199254740992"),
        (-MAX_SAFE_INTEGER, "-9007199254740992"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789e12, "123456789000000000000"),
        (1.5e21, "1.5e+21"),
        (1e-6, "0.000001"),
        (9.5e-7, "9.5e-7"),
        (1.5e-6, "0.0000015"),
        (1e-7, "1e-7"),
        (1.25e-7, "1.25e-7"),
        (0.1, "0.1"),
        (0.3, "0.3"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-12.5, "-12.5"),
        (5e-324, "5e-324"),
        (1234.5e-10, "1.2345e-7"),
    ],
)
def test_numbers(value: float, expected: str) -> None:
    assert canonicalize(value) == expected.encode()


@pytest.mark.parametrize(
    "value", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 10**30 + 1, 2**1024, 3**700]
)
def test_integers_beyond_2_53_that_a_double_would_change_are_refused(value: int) -> None:
    with pytest.raises(ValueError, match="beyond 2\\*\\*53 and a double would change it"):
        canonicalize({"amount": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MAX_SAFE_INTEGER + 2, "9007199254740994"),
        (10**20, "100000000000000000000"),
        (2**68, "295147905179352830000"),
        (10**21, "1e+21"),
        (-(2**100), "-1.2676506002282294e+30"),
        (2**60, "1152921504606847000"),
        (1152921504606847000, "1152921504606847000"),
        (37692532194307690, "37692532194307690"),
    ],
)
def test_integers_beyond_2_53_that_a_double_keeps_are_that_double(
    value: int, expected: str
) -> None:
    # The canonical form of a large float reads back in Python as an int; it must give the
    # same bytes again, as it does in any language that reads JSON numbers as doubles.
    assert canonicalize(value) == expected.encode()
    assert canonicalize(value) == canonicalize(float(value))


@pytest.mark.parametrize(
    "value",
    [
        b"bytes",
        {1, 2},
        Decimal("1.5"),
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        object(),
        {"nested": [1, {"deeper": Decimal("1")}]},
    ],
)
def test_values_without_a_json_form_are_refused(value: object) -> None:
    with pytest.raises(TypeError, match="has no JSON form"):
        canonicalize(value)


@pytest.mark.parametrize("key", [1, None, ("a",), b"a"])
def test_non_string_keys_are_refused(key: object) -> None:
    with pytest.raises(TypeError, match="object keys must be strings"):
        canonicalize({key: 1})


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", {"\udc00": 1}])
def test_lone_surrogates_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        canonicalize(text)


def test_nesting_is_bounded() -> None:
    deep: object = []
    for _ in range(150):
        deep = [deep]
    assert canonicalize(deep) == b"[" * 151 + b"]" * 151
    for _ in range(100):
        deep = {"a": deep}
    with pytest.raises(ValueError, match="nesting deeper"):
        canonicalize(deep)


def _json_values() -> st.SearchStrategy[object]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(st.text(max_size=8), children, max_size=5)
        ),
        max_leaves=20,
    )


@given(_json_values())
def test_canonical_form_is_json_of_the_same_value_and_a_fixed_point(value: object) -> None:
    encoded = canonicalize(value)
    decoded = json.loads(encoded)
    assert canonicalize(decoded) == encoded
    assert b"\n" not in encoded
    assert b": " not in encoded


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip_in_the_ecmascript_layout(value: float) -> None:
    text = number_to_string(value)
    assert float(text) == value
    magnitude = abs(value)
    plain = magnitude == 0 or 1e-6 <= magnitude < 1e21
    assert ("e" not in text) == plain
    if "e" in text:
        mantissa, exponent = text.split("e")
        assert exponent[0] in "+-"
        assert exponent[1:].isdigit()
        assert exponent[1] != "0"
        assert not mantissa.endswith("0")
        assert not mantissa.endswith(".")
    if "." in text:
        assert not text.split("e")[0].endswith("0")
    assert not math.copysign(1, value) < 0 or value == 0 or text.startswith("-")


def _general(value: object) -> bytes:
    parts: list[str] = []
    jcs._write(value, parts, 0)
    return "".join(parts).encode("utf-8")


@given(_json_values())
def test_the_fast_path_writes_what_the_general_path_writes(value: object) -> None:
    # Values without floats or keys beyond U+FFFF go through the standard encoder; the result
    # must be byte for byte the general writer's.
    assert canonicalize(value) == _general(value)


def test_keys_beyond_the_bmp_take_the_general_path() -> None:
    value = {"\U0001f600": 1, "\uffff": 2, "\ue000": 3}
    assert jcs._plain(value) is False
    # U+1F600 is the surrogate pair d83d de00, which sorts before U+E000.
    assert canonicalize(value) == '{"\U0001f600":1,"\ue000":3,"\uffff":2}'.encode()


class Mode(StrEnum):
    B2C = "9610"


class Level(IntEnum):
    HIGH = 3


def test_str_and_int_subclasses_are_their_values() -> None:
    assert canonicalize({"mode": Mode.B2C, "level": Level.HIGH}) == b'{"level":3,"mode":"9610"}'


@given(_json_values())
def test_canonicalize_plain_agrees_on_every_plain_value(value: object) -> None:
    if jcs._plain(value):
        assert jcs.canonicalize_plain(value) == _general(value)
