"""The access matrix's vocabulary, shared by tests/hub/test_permissions.py and the rows each
later area adds (``tests/<area>/access.py``: ``ROWS`` and ``MAKERS``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import Tenant

ROLES = ("operator", "merchant", "payment_institution", "bank", "insurer", "regulator")
ALL = frozenset(ROLES)
WRITERS = ALL - {"regulator"}
OPERATOR = frozenset({"operator"})

KEY = "key"  # a key is required
OPEN = "open"  # no key needed, but a key that does not authenticate is refused
PUBLIC = "public"  # the Authorization header is not read at all


@dataclass(frozen=True)
class Row:
    method: str
    name: str  # the URL name in hub.urls
    allowed: frozenset[str]
    ok: int = 200
    target: str | None = None  # the kind of object the URL names, if any
    # A body, or a function of the tenants giving one (when it must name a tenant's object).
    body: dict[str, Any] | Callable[[dict[str, Tenant]], dict[str, Any]] = field(
        default_factory=dict
    )
    auth: str = KEY
    echo: bool = False  # a success answers with the object the URL names
    # Roles that see every tenant's objects (others get 404 on another tenant's).
    sees_all: frozenset[str] = frozenset({"operator"})

    def __str__(self) -> str:
        return f"{self.method} {self.name}"
