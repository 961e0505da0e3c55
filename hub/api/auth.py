from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from hub import errors
from hub.principal import Principal
from hub.services.api_keys import api_key_authenticate


def bearer_secret(meta: Mapping[str, Any]) -> str | None:
    """The API key a request's ``Authorization: Bearer ...`` header gives; None with no header,
    401 ``invalid_authorization_header`` for any other scheme or an empty key."""
    header = meta.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise errors.AuthenticationFailed(
            "Use 'Authorization: Bearer <api key>'.", code="invalid_authorization_header"
        )
    return secret.strip()


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer hk_test_...``. No header means anonymous (the permission class
    then answers 401); a header that does not authenticate is 401 at once."""

    def authenticate(self, request: Request) -> tuple[Principal, Any] | None:
        secret = bearer_secret(request.META)
        if secret is None:
            return None
        inner = request._request
        api_key = api_key_authenticate(secret=secret)
        principal = Principal(
            participant=api_key.participant,
            api_key=api_key,
            livemode=api_key.livemode,
            scopes=frozenset(api_key.scopes),
            request_id=getattr(inner, "request_id", ""),
            ip_address=inner.META.get("REMOTE_ADDR"),
        )
        # The audit middleware reads who called from the Django request.
        inner.hub_principal = principal  # type: ignore[attr-defined]
        return principal, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="hub"'
