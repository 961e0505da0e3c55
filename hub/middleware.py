from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from hub import errors
from hub.api.errors import error_response
from hub.ids import new_id
from hub.services.audit import audit_record

logger = logging.getLogger("hub.audit")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Handler = Callable[[HttpRequest], HttpResponse]


class RequestIdMiddleware:
    """Every response carries ``Request-Id``; errors and the audit trail quote the same id."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.request_id = new_id("req")  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["Request-Id"] = request.request_id  # type: ignore[attr-defined]
        return response


class BodyLimitMiddleware:
    """Refuse bodies over ``BODY_LIMIT`` (or the larger limit ``BODY_LIMITS`` gives their
    path) with 413 before anything parses them. A body over ``BODY_LIMIT`` is read only for a
    caller whose API key authenticates: anyone else gets the 401 before the server takes it in."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.conf import settings

        if request.method in WRITE_METHODS:
            limit = settings.BODY_LIMITS.get(request.path, settings.BODY_LIMIT)
            declared = request.META.get("CONTENT_LENGTH") or "0"
            too_big = not declared.isdigit() or int(declared) > limit
            if not too_big and int(declared) > settings.BODY_LIMIT:
                try:
                    _authenticated(request)
                except errors.HubError as exc:
                    return error_response(exc, request)
            if not too_big:
                try:
                    too_big = len(request.body) > limit
                except RequestDataTooBig:
                    too_big = True
            if too_big:
                return error_response(
                    errors.PayloadTooLarge(f"Request bodies are limited to {limit} bytes."), request
                )
        return self.get_response(request)


def _authenticated(request: HttpRequest) -> None:
    """Raises the API's 401 (or 403) unless the request's bearer key authenticates."""
    from hub.api.auth import bearer_secret
    from hub.services.api_keys import api_key_authenticate

    secret = bearer_secret(request.META)
    if secret is None:
        raise errors.AuthenticationFailed()
    api_key_authenticate(secret=secret)


class AuditTrailMiddleware:
    """One audit row for every authenticated write, whatever its outcome, and for every read of
    a view that asks for it (``audit_reads``), with its query string."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        principal = getattr(request, "hub_principal", None)
        audited_read = getattr(request, "hub_audit_read", False)
        if principal is not None and (request.method in WRITE_METHODS or audited_read):
            audit_record(
                actor=principal,
                method=request.method or "",
                path=request.get_full_path() if audited_read else request.path,
                status_code=response.status_code,
                object_id=_object_id(response),
                user_agent=request.headers.get("User-Agent", ""),
                idempotency_key=request.headers.get("Idempotency-Key", ""),
            )
        return response


def _object_id(response: HttpResponse) -> str:
    if response.status_code >= 300:
        return ""
    data: Any = getattr(response, "data", None)
    if data is None and response.get("Content-Type", "").startswith("application/json"):
        try:
            data = json.loads(response.content)
        except ValueError:
            return ""
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])[:40]
    return ""
