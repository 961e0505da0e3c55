"""Endpoints that answer JSON or a file: ``?format=`` names the file format (not one of DRF's
renderers, which would answer ``?format=csv`` with a 404), and errors stay JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
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


def attachment(
    response: HttpResponse | StreamingHttpResponse, filename: str
) -> HttpResponse | StreamingHttpResponse:
    """``response`` as a file to save as ``filename``, that no shared cache keeps (a
    participant's records)."""
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


def file_response(body: bytes | str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    attachment(response, filename)
    return response


def csv_response(
    header: Sequence[str], rows: Iterable[Sequence[Any]], filename: str
) -> HttpResponse:
    """A CSV attachment (CRLF lines, UTF-8)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return file_response(out.getvalue(), "text/csv; charset=utf-8", filename)


def csv_streaming_response(
    header: Sequence[str], rows: Iterable[Sequence[Any]], filename: str, *, chunk: int = 2000
) -> StreamingHttpResponse:
    """The same attachment as ``csv_response``, written ``chunk`` rows at a time as the client
    reads it, so that a large export never sits whole in the server's memory."""

    def lines() -> Iterator[bytes]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        it = iter(rows)
        while True:
            writer.writerows(islice(it, chunk))
            text = out.getvalue()
            if not text:
                return
            yield text.encode()
            out.seek(0)
            out.truncate()

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    attachment(response, filename)
    return response
