from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rest_framework.parsers import BaseParser

from hub import errors


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


class StrictJSONParser(BaseParser):
    """JSON objects only, UTF-8, no NaN or Infinity, no duplicate keys; floats are kept as
    Decimal so that no amount is ever a float."""

    media_type = "application/json"

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = stream.read() if stream is not None else b""
        if not raw:
            return {}
        try:
            data = json.loads(
                raw.decode("utf-8"),
                parse_float=Decimal,
                parse_constant=_reject_constant,
                object_pairs_hook=_unique_keys,
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise errors.InvalidRequest(
                f"The body is not valid JSON: {exc}.", code="invalid_json"
            ) from None
        if not isinstance(data, dict):
            raise errors.InvalidRequest("The body must be a JSON object.", code="invalid_json")
        return data
