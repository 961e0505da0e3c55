"""Endpoints that answer JSON or a file: ``?format=`` names the file format (not one of DRF's
renderers, which would answer ``?format=csv`` with a 404), and errors stay JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from django.http import HttpResponse
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request

from hub import errors
from hub.api.base import HubAPIView


class ExportView(HubAPIView):
    formats: Sequence[str] = ("json", "csv")

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    def file_format(self, request: Request) -> str:
        fmt = request.query_params.get("format", self.formats[0])
        if fmt not in self.formats:
            raise errors.InvalidRequest(
                f"format is {' or '.join(self.formats)}.", code="parameter_invalid", param="format"
            )
        return fmt


def csv_response(
    header: Sequence[str], rows: Iterable[Sequence[Any]], filename: str
) -> HttpResponse:
    """A CSV attachment (CRLF lines, UTF-8) that no shared cache keeps."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response
