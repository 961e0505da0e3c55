from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from hub import errors
from hub.models import Role
from hub.principal import Principal

ALL_ROLES = frozenset(Role.values)
WRITERS = ALL_ROLES - {Role.REGULATOR}
OPERATOR_ONLY = frozenset({Role.OPERATOR})


@dataclass(frozen=True)
class Rule:
    """Who may call one method of one endpoint: the roles, and the scope the key must carry.
    ``public`` endpoints need no key."""

    roles: frozenset[str] = ALL_ROLES
    scope: str = ""
    public: bool = False


class RolePermission(BasePermission):
    """Endpoint-level check from the view's ``access`` table; object-level checks happen in the
    selectors, which only ever return the caller's own objects (others' ids are 404)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        rule: Rule | None = getattr(view, "access", {}).get(request.method)
        if rule is None:
            # Methods with no rule are not offered; OPTIONS and HEAD follow GET.
            rule = (
                getattr(view, "access", {}).get("GET")
                if request.method in {"HEAD", "OPTIONS"}
                else None
            )
            if rule is None:
                raise errors.InvalidRequest(
                    f"{request.method} is not allowed here.", code="method_not_allowed", status=405
                )
        if rule.public:
            return True
        principal = request.user
        if not isinstance(principal, Principal):
            raise errors.AuthenticationFailed(
                "Authenticate with 'Authorization: Bearer hk_test_...' or 'hk_live_...'.",
                code="api_key_missing",
            )
        if principal.role not in rule.roles:
            raise errors.PermissionDenied(
                f"A {principal.role} may not call {request.method} {request.path}.",
                code="role_forbidden",
            )
        if rule.scope and rule.scope not in principal.scopes:
            raise errors.PermissionDenied(
                f"This key lacks the scope {rule.scope!r}.", code="scope_missing"
            )
        return True
