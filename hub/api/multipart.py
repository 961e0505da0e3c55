"""The hub's multipart endpoints (files as they came: bank statements, trade document files):
one file part named ``file`` and a few text fields, each given at most once; anything else is a
clear 4xx before the file is read."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.files.uploadedfile import UploadedFile
from rest_framework import exceptions as drf
from rest_framework.request import Request

from hub import errors


def multipart_upload(
    request: Request, *, fields: Sequence[str], what: str
) -> tuple[UploadedFile, dict[str, str]]:
    """The request's one file and its text fields (those of ``fields`` that were given).
    ``what`` names the file in messages ("the statement")."""
    try:
        form, files = request.POST, request.FILES
    except drf.UnsupportedMediaType:
        raise errors.InvalidRequest(
            f"Send {what} as multipart/form-data, the file in a part named file.",
            code="unsupported_media_type",
            status=415,
        ) from None
    except drf.ParseError as exc:
        raise errors.InvalidRequest(
            f"The multipart body cannot be read: {exc.detail}", code="multipart_invalid"
        ) from None
    except RequestDataTooBig:
        raise errors.PayloadTooLarge() from None
    except SuspiciousOperation as exc:  # too many fields or files
        raise errors.InvalidRequest(
            f"The multipart body cannot be read: {exc}", code="multipart_invalid"
        ) from None
    unknown = sorted((set(form) | set(files)) - {"file", *fields})
    if unknown:
        raise errors.InvalidRequest(
            f"Unknown parameter: {unknown[0]}.", code="parameter_unknown", param=unknown[0]
        )
    if "file" in form:
        raise errors.InvalidRequest(
            "file must be a file part, not a text field.", code="parameter_invalid", param="file"
        )
    uploads = files.getlist("file")
    if not uploads:
        raise errors.InvalidRequest(
            f"file is required: {what}, as a multipart part named file.",
            code="parameter_missing",
            param="file",
        )
    if len(uploads) > 1:
        raise errors.InvalidRequest(
            "Upload one file per request.", code="parameter_invalid", param="file"
        )
    values: dict[str, str] = {}
    for name in fields:
        given = form.getlist(name)
        if name in files or len(given) > 1:
            raise errors.InvalidRequest(
                f"{name} is one text field.", code="parameter_invalid", param=name
            )
        if given:
            values[name] = given[0]
    return uploads[0], values
