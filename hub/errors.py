"""The hub's coded exceptions. Services raise them; one DRF handler renders the error object.

Every error the API shows is ``{"error": {"type", "code", "message", "param", "request_id"}}``.
``type`` says who must act (the caller fixes the request, authenticates, or waits), ``code`` is
stable and machine-readable, ``message`` is for people and never carries internals.
"""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"
    default_message = "The request is invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        **details: Any,
    ) -> None:
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.details = details
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
        }
        body.update(self.details)
        return body


class InvalidRequest(HubError):
    pass


class AuthenticationFailed(HubError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"
    default_message = "The API key is missing, unknown, expired or revoked."


class PermissionDenied(HubError):
    status = 403
    type = "permission_error"
    code = "forbidden"
    default_message = "This key may not perform this request."


class NotFound(HubError):
    status = 404
    code = "resource_missing"
    default_message = "No such object."


class Conflict(HubError):
    status = 409
    code = "conflict"
    default_message = "The object is not in a state that allows this request."


class IdempotencyError(HubError):
    type = "idempotency_error"


class PayloadTooLarge(HubError):
    status = 413
    code = "payload_too_large"
    default_message = "The request body exceeds the limit."


class ApiError(HubError):
    status = 500
    type = "api_error"
    code = "internal_error"
    default_message = "The hub failed to process the request; it has been logged."
