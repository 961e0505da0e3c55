"""The one place errors become the API's error object."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.renderers import JSONRenderer

from hub import errors

logger = logging.getLogger("hub.api")

_DRF_CODES = {
    "required": "parameter_missing",
    "null": "parameter_missing",
    "blank": "parameter_missing",
}


def request_id_of(request: Any) -> str:
    inner = getattr(request, "_request", request)
    return str(getattr(inner, "request_id", ""))


def error_body(exc: errors.HubError, request_id: str) -> dict[str, Any]:
    body = exc.as_dict()
    body["request_id"] = request_id
    return {"error": body}


def error_response(exc: errors.HubError, request: HttpRequest | None = None) -> JsonResponse:
    rid = request_id_of(request) if request is not None else ""
    return JsonResponse(error_body(exc, rid), status=exc.status)


def _first_error(detail: Any, path: str = "") -> tuple[str, Any]:
    """Walk DRF's nested error detail down to the first message and the dotted path to it."""
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        name = "" if key == "non_field_errors" else str(key)
        sub = f"{path}.{name}" if path and name else (name or path)
        return _first_error(value, sub)
    if isinstance(detail, list) and detail:
        for index, item in enumerate(detail):
            if item:  # ListSerializer reports {} for the valid items
                if isinstance(item, (dict, list)) and len(detail) > 1:
                    return _first_error(item, f"{path}[{index}]")
                return _first_error(item, path)
    return path, detail


def from_drf(exc: drf.APIException) -> errors.HubError:
    if isinstance(exc, drf.ValidationError):
        param, detail = _first_error(exc.detail)
        code = getattr(detail, "code", "invalid") or "invalid"
        hub_code = _DRF_CODES.get(
            code, code if code.startswith("parameter_") else "parameter_invalid"
        )
        message = str(detail)
        if param and hub_code == "parameter_missing":
            message = f"{param} is required."
        return errors.InvalidRequest(message, code=hub_code, param=param or None)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return errors.AuthenticationFailed(
            "Authenticate with 'Authorization: Bearer hk_test_...' or 'hk_live_...'.",
            code="api_key_missing" if isinstance(exc, drf.NotAuthenticated) else "invalid_api_key",
        )
    if isinstance(exc, drf.PermissionDenied):
        return errors.PermissionDenied(str(exc.detail))
    if isinstance(exc, drf.NotFound):
        return errors.NotFound()
    if isinstance(exc, drf.MethodNotAllowed):
        return errors.InvalidRequest(str(exc.detail), code="method_not_allowed", status=405)
    if isinstance(exc, drf.UnsupportedMediaType):
        return errors.InvalidRequest(
            "Send request bodies as application/json.", code="unsupported_media_type", status=415
        )
    if isinstance(exc, drf.NotAcceptable):
        return errors.InvalidRequest(str(exc.detail), code="not_acceptable", status=406)
    if isinstance(exc, drf.Throttled):
        return errors.HubError(str(exc.detail), code="rate_limited", status=429)
    if isinstance(exc, drf.ParseError):
        return errors.InvalidRequest(str(exc.detail), code="invalid_json")
    return errors.HubError(str(exc.detail), code=str(exc.default_code), status=exc.status_code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse:
    request = context.get("request")
    hub_exc: errors.HubError
    if isinstance(exc, errors.HubError):
        hub_exc = exc
    elif isinstance(exc, drf.APIException):
        hub_exc = from_drf(exc)
    elif isinstance(exc, Http404):
        hub_exc = errors.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        hub_exc = errors.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        hub_exc = errors.PayloadTooLarge()
    else:
        logger.exception("unhandled error on %s", getattr(request, "path", "?"))
        hub_exc = errors.ApiError()
    # Rendered here rather than by the view's renderer, so that an error is the JSON error object
    # even from a view that renders HTML (the docs pages).
    response = HttpResponse(
        JSONRenderer().render(error_body(hub_exc, request_id_of(request))),
        status=hub_exc.status,
        content_type="application/json",
    )
    if hub_exc.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="hub"'
    return response


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(errors.NotFound("No such endpoint.", code="endpoint_missing"), request)


def server_error_view(request: HttpRequest) -> JsonResponse:
    return error_response(errors.ApiError(), request)


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(errors.InvalidRequest(), request)


def permission_denied_view(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return error_response(errors.PermissionDenied(), request)
