"""The base view every endpoint uses: authentication, the access table, idempotency keys."""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import HttpResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub import errors
from hub.api.permissions import Rule
from hub.models import IdempotencyRecord
from hub.principal import Principal
from hub.services.idempotency import StoredResponse, idempotency_begin, idempotency_complete


class _Replay(Exception):
    def __init__(self, stored: StoredResponse) -> None:
        self.stored = stored


class HubAPIView(APIView):
    access: ClassVar[dict[str, Rule]] = {}
    # Reads of this view go to the audit trail too (writes always do): the regulator's.
    audit_reads: ClassVar[bool] = False

    _idempotency: IdempotencyRecord | None = None

    @property
    def actor(self) -> Principal:
        user = self.request.user
        assert isinstance(user, Principal)
        return user

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Marked before authentication and permissions run, so that refused reads are kept too.
        request._request.hub_audit_read = self.audit_reads  # type: ignore[attr-defined]
        super().initial(request, *args, **kwargs)
        for name, value in request.query_params.items():
            # PostgreSQL cannot hold NUL in text: refused here, for every filter at once.
            if "\x00" in name or "\x00" in value:
                raise errors.InvalidRequest(
                    "Query parameters may not contain NUL.", code="parameter_invalid", param=name
                )
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key is not None:
            claimed = idempotency_begin(
                actor=self.actor,
                key=key,
                method=request.method,
                path=request.get_full_path(),
                body=request._request.body,
            )
            if isinstance(claimed, StoredResponse):
                raise _Replay(claimed)
            self._idempotency = claimed

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, _Replay):
            response = HttpResponse(
                exc.stored.body, status=exc.stored.status, content_type="application/json"
            )
            response["Idempotent-Replayed"] = "true"
            return response
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        record, self._idempotency = self._idempotency, None
        if record is not None:
            if isinstance(response, Response):
                response.render()
            idempotency_complete(record=record, status=response.status_code, body=response.content)
        return response
