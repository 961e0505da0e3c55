"""Cursor pagination on time-ordered ids: newest first, ``limit`` 1..100, ``starting_after`` or
``ending_before`` an id from a previous page. Stable under inserts, one indexed range scan."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from hub import errors

DEFAULT_LIMIT = 10
MAX_LIMIT = 100

LIST_PARAMETERS = [
    OpenApiParameter("limit", int, description=f"1 to {MAX_LIMIT}, default {DEFAULT_LIMIT}"),
    OpenApiParameter(
        "starting_after", str, description="id of the last object of the previous page"
    ),
    OpenApiParameter("ending_before", str, description="id of the first object of the next page"),
]


def limit_param(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # isascii: str.isdigit() also accepts digits int() refuses, such as "²".
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise errors.InvalidRequest(
            f"limit must be an integer from 1 to {MAX_LIMIT}.",
            code="parameter_invalid",
            param="limit",
        )
    return int(raw)


def _cursor(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if not value or len(value) > 40 or not value.replace("_", "").isalnum():
        raise errors.InvalidRequest(
            f"{name} must be an object id.", code="parameter_invalid", param=name
        )
    return value


def paginate(request: Request, queryset: QuerySet[Any]) -> tuple[list[Any], bool]:
    """One page of ``queryset`` (ordered by id, newest first) and whether more lie beyond it."""
    return page(
        queryset,
        limit=limit_param(request),
        after=_cursor(request, "starting_after"),
        before=_cursor(request, "ending_before"),
    )


def page(
    queryset: QuerySet[Any],
    *,
    limit: int,
    after: object | None,
    before: object | None,
    field: str = "pk",
    newest_first: bool = True,
) -> tuple[list[Any], bool]:
    """One page of ``queryset`` in the order of ``field``, after or before the positions the
    cursors were turned into, and whether more lie beyond it."""
    if after is not None and before is not None:
        raise errors.InvalidRequest(
            "Use starting_after or ending_before, not both.",
            code="parameter_invalid",
            param="ending_before",
        )
    onward, back = ("lt", "gt") if newest_first else ("gt", "lt")
    order = f"-{field}" if newest_first else field
    if before is not None:
        reverse = field if newest_first else f"-{field}"
        rows = list(queryset.filter(**{f"{field}__{back}": before}).order_by(reverse)[: limit + 1])
        return list(reversed(rows[:limit])), len(rows) > limit
    if after is not None:
        queryset = queryset.filter(**{f"{field}__{onward}": after})
    rows = list(queryset.order_by(order)[: limit + 1])
    return rows[:limit], len(rows) > limit


def list_body(data: Any, has_more: bool, url: str) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def choice_param(request: Request, name: str, values: Collection[str]) -> str | None:
    """An optional filter parameter that must be one of ``values`` (400 otherwise)."""
    value = request.query_params.get(name)
    if value is not None and value not in values:
        raise errors.InvalidRequest(
            f"{name} must be one of: {', '.join(sorted(values))}.",
            code="parameter_invalid",
            param=name,
        )
    return value
