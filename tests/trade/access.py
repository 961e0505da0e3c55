"""Rows of the access matrix (tests/hub/test_permissions.py) for this area's endpoints, and the
makers of the objects their URLs name."""

from __future__ import annotations

from collections.abc import Callable

from tests.access import Row
from tests.conftest import Tenant

ROWS: list[Row] = []
MAKERS: dict[str, Callable[[Tenant], str]] = {}
