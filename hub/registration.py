"""Check characters of the registration ids the hub accepts.

- China: the 18-character unified social credit code of GB 32100-2015. Characters come from
  ``0-9`` and ``ABCDEFGHJKLMNPQRTUWXY`` (value 0..30); position i (1-based, 1..17) weighs
  3**(i-1) mod 31 and the 18th character is (31 - sum mod 31) mod 31. Characters 9..17 are the
  organisation code of GB 11714, whose own check character (position 17) is also verified.
- Korea: the 10-digit business registration number (사업자등록번호), weights 1,3,7,1,3,7,1,3,5,
  plus the tens digit of the ninth digit times five; the tenth digit makes the sum a multiple
  of ten.
"""

from __future__ import annotations

import re
import unicodedata

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]
_ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
_BRN_WEIGHTS = [1, 3, 7, 1, 3, 7, 1, 3, 5]


def normalise(value: str) -> str:
    """Strip the separators people type (``220-81-62517``) and upper-case; full-width characters
    from a CJK input method become ASCII (NFKC)."""
    return re.sub(r"[\s-]", "", unicodedata.normalize("NFKC", value)).upper()


def uscc_check_char(first17: str) -> str:
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def org_code_check_char(first8: str) -> str:
    # GB 11714 values letters A..Z as 10..35 (int(c, 36)), unlike the 31-character USCC set.
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def is_valid_uscc(code: str) -> bool:
    if len(code) != 18 or any(c not in _USCC_CHARS for c in code):
        return False
    if not code[2:8].isdigit():  # administrative division code
        return False
    if code[17] != uscc_check_char(code[:17]):
        return False
    return code[16] == org_code_check_char(code[8:16])


def brn_check_digit(first9: str) -> str:
    digits = [int(c) for c in first9]
    total = sum(d * w for d, w in zip(digits, _BRN_WEIGHTS, strict=True))
    total += digits[8] * 5 // 10
    return str((10 - total % 10) % 10)


def is_valid_brn(number: str) -> bool:
    # isascii: str.isdigit() also holds for full-width and other Unicode digits, which would let
    # one company register twice under two spellings of its number.
    return (
        len(number) == 10
        and number.isascii()
        and number.isdigit()
        and number[9] == brn_check_digit(number[:9])
    )


def is_valid_registration_id(country: str, value: str) -> bool:
    if country == "CN":
        return is_valid_uscc(value)
    if country == "KR":
        return is_valid_brn(value)
    return False
