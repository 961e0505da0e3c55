"""hub.registration: check characters of Chinese unified social credit codes and Korean business
registration numbers."""

from __future__ import annotations

import pytest

from hub.registration import (
    _USCC_CHARS,
    brn_check_digit,
    is_valid_brn,
    is_valid_registration_id,
    is_valid_uscc,
    normalise,
    org_code_check_char,
    uscc_check_char,
)

# Published codes of real companies.
HUAWEI = "91440300708461136T"
TENCENT = "9144030071526726XG"
FUZHOU = "91350100M000100Y43"  # letters inside the organisation code
REAL_USCC = [HUAWEI, TENCENT, FUZHOU]
REAL_BRN = ["1248100998", "2208162517"]  # Samsung Electronics, NAVER


def full_width(text: str) -> str:
    """``text`` as a CJK input method types it: ASCII letters, digits and '-' full-width."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


@pytest.mark.parametrize("code", REAL_USCC)
def test_real_uscc_validate(code):
    assert is_valid_uscc(code)
    assert is_valid_registration_id("CN", code)
    assert uscc_check_char(code[:17]) == code[17]
    assert org_code_check_char(code[8:16]) == code[16]


@pytest.mark.parametrize("code", REAL_USCC)
@pytest.mark.parametrize("position", range(18))
def test_uscc_with_one_character_changed_fails(code, position):
    # The next character of the code set: always a different, otherwise well-formed code.
    replacement = _USCC_CHARS[(_USCC_CHARS.index(code[position]) + 1) % len(_USCC_CHARS)]
    changed = code[:position] + replacement + code[position + 1 :]
    assert not is_valid_uscc(changed)


@pytest.mark.parametrize(
    "code",
    [
        HUAWEI[:17],
        HUAWEI + "0",
        "",
        HUAWEI.lower(),
        HUAWEI[:10] + "I" + HUAWEI[11:],  # I, O, S, V, Z are not in the code set
        HUAWEI[:10] + "O" + HUAWEI[11:],
        "91" + "A" + HUAWEI[3:],  # the division code is six digits
        HUAWEI[:6] + " " + HUAWEI[7:],
    ],
)
def test_malformed_uscc_fail(code):
    assert not is_valid_uscc(code)


def test_a_uscc_is_not_a_korean_number():
    assert not is_valid_registration_id("KR", HUAWEI)
    assert not is_valid_registration_id("JP", HUAWEI)


@pytest.mark.parametrize("number", REAL_BRN)
def test_real_brn_validate(number):
    assert is_valid_brn(number)
    assert is_valid_registration_id("KR", number)
    assert brn_check_digit(number[:9]) == number[9]


@pytest.mark.parametrize("number", REAL_BRN)
@pytest.mark.parametrize("position", range(10))
def test_brn_with_one_digit_changed_fails(number, position):
    for digit in "0123456789":
        if digit == number[position]:
            continue
        changed = number[:position] + digit + number[position + 1 :]
        assert not is_valid_brn(changed), changed


@pytest.mark.parametrize(
    "number",
    ["124810099", "12481009980", "", "12481009a8", "124-81-00998", full_width("124") + "8100998"],
)
def test_malformed_brn_fail(number):
    assert not is_valid_brn(number)


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("124-81-00998", "1248100998"),
        (" 220 81 62517 ", "2208162517"),
        ("9144030071526726xg", TENCENT),
        ("91440300-708461136t", HUAWEI),
        (full_width("124-81-00998"), "1248100998"),
        (HUAWEI, HUAWEI),
    ],
)
def test_normalise_strips_separators_and_upper_cases(typed, normalised):
    assert normalise(typed) == normalised
    country = "KR" if normalised.isdigit() else "CN"
    assert is_valid_registration_id(country, normalise(typed))
