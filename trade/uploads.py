"""Filing documents in bulk: one file, one kind of document, up to 100,000 rows.

A file is CSV (UTF-8, a header row naming the kind's columns, in any order; optional columns may
be left out) or JSON lines (one JSON object per line, the same names as keys, every value a
string), either of them possibly gzip-compressed. Each row is checked as the single-document API
checks a document (``trade.rules``), then against the rest of the file and what the merchant
filed before:

- a number repeated in the file: the first valid row with it is judged, later ones are refused
  (``duplicate_in_file``);
- a number the merchant filed before is refused (``document_exists``);
- the documents a row names must be stored before the file is sent (``order_missing``,
  ``contract_missing``): a file holds one kind, so orders go in a file of their own first.

``mode`` says what happens to the good rows when some are refused: ``partial`` stores them and
reports the others; ``all_or_nothing`` stores none of them if any row is refused. Either way the
upload itself is stored with its counts and the first ``ERRORS_KEPT`` row errors, and one
``document_upload.created`` event is written. A file that cannot be read as a whole (not UTF-8,
a wrong header, not JSON lines, no rows, too many rows, too large) is refused with a 400 (413 for
size) and nothing is stored.

Speed: rows are checked in one tight loop, numbers and links looked up in chunks, and the
documents written with one COPY on PostgreSQL (one ``executemany`` on SQLite).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from hub import errors
from hub.ids import IdFactory, new_ids
from hub.models import Participant
from hub.principal import Principal
from hub.services.events import event_emit
from trade.models import DocumentUpload, _Document
from trade.rules import KINDS, DocumentError, Kind, Values, context_at
from trade.services import _check_active, merchant_for, stamp

ROWS_MAX = 100_000
# 100,000 rows of the widest kind with long names fit in well under this.
BYTES_MAX = 64 * 1024 * 1024
ERRORS_KEPT = 1_000
# Numbers looked up per query (well under SQLite's and PostgreSQL's parameter limits).
CHUNK = 5_000

Upload = DocumentUpload


@dataclass(frozen=True)
class RowError:
    row: int
    code: str
    param: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "code": self.code, "param": self.param, "message": self.message}


def _file_error(message: str, code: str = "upload_invalid") -> errors.HubError:
    return errors.InvalidRequest(message, code=code, param="file")


# --- reading a file ------------------------------------------------------------------------------


def _inflated(data: bytes) -> bytes:
    """A gzip-compressed file as it was before compression, bounded like any file."""
    if data[:2] != b"\x1f\x8b":
        return data
    inflater = zlib.decompressobj(wbits=31)
    try:
        plain = inflater.decompress(data, BYTES_MAX + 1)
    except zlib.error as exc:
        raise _file_error(f"The gzip file cannot be decompressed: {exc}.") from None
    if len(plain) > BYTES_MAX or inflater.unconsumed_tail:
        raise errors.PayloadTooLarge(f"An upload file is limited to {BYTES_MAX} bytes unpacked.")
    if not inflater.eof:
        raise _file_error("The gzip file is cut short.")
    return plain


def _text_of(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _file_error(f"The file is not UTF-8 text (an invalid byte on line {line}).") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise _file_error(f"The file holds a NUL character on line {line}: it is not text.")
    return text


def _csv_rows(kind: Kind, text: str) -> Iterator[tuple[int, Mapping[str, object] | RowError]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise _file_error(f"The CSV header cannot be read: {exc}.") from None
    if header is None:
        raise _file_error("The file is empty.", code="upload_empty")
    names = [name.strip() for name in header]
    unknown = [name for name in names if name not in kind.fields]
    required = [name for name in kind.fields if name not in kind.optional]
    missing = [name for name in required if name not in names]
    if unknown or missing or len(set(names)) != len(names):
        problem = (
            f"unknown column {unknown[0]!r}"
            if unknown
            else f"missing column {missing[0]!r}"
            if missing
            else "a column named twice"
        )
        raise _file_error(
            f"The CSV header of a {kind.name} file names its columns: {', '.join(kind.fields)} "
            f"({', '.join(sorted(kind.optional)) or 'none'} optional); this one has {problem}.",
            code="upload_header_invalid",
        )
    width = len(names)
    row = 1
    try:
        for record in reader:
            row += 1
            if not record:
                continue  # a blank line
            if len(record) != width:
                yield (
                    row,
                    RowError(
                        row,
                        "row_malformed",
                        None,
                        f"The row has {len(record)} cells; the header has {width}.",
                    ),
                )
                continue
            yield row, dict(zip(names, record, strict=True))
    except csv.Error as exc:
        raise _file_error(f"Row {row + 1} cannot be read as CSV: {exc}.") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a key appears twice")
    return result


def _jsonl_rows(kind: Kind, text: str) -> Iterator[tuple[int, Mapping[str, object] | RowError]]:
    fields = frozenset(kind.fields)
    seen_object = False
    for row, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(
                line,
                parse_float=Decimal,
                parse_constant=_reject_constant,
                object_pairs_hook=_unique_keys,
            )
        except (ValueError, RecursionError) as exc:
            value = exc
        if not isinstance(value, dict):
            if not seen_object:
                raise _file_error(
                    f"Line {row} is not a JSON object: the file is not JSON lines of "
                    f"{kind.name} documents."
                )
            reason = value if isinstance(value, Exception) else "not an object"
            yield (
                row,
                RowError(row, "row_malformed", None, f"The line is not a JSON object: {reason}."),
            )
            continue
        seen_object = True
        unknown = [name for name in value if name not in fields]
        if unknown:
            yield (
                row,
                RowError(row, "parameter_unknown", unknown[0], f"Unknown field: {unknown[0]}."),
            )
            continue
        wrong = [name for name, item in value.items() if not isinstance(item, str | None)]
        if wrong:
            yield (
                row,
                RowError(
                    row,
                    "parameter_invalid",
                    wrong[0],
                    f"{wrong[0]} must be a string (amounts are decimal strings, such as "
                    '"1234.50").',
                ),
            )
            continue
        yield row, value


# --- checking the rows ---------------------------------------------------------------------------


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _stored_numbers(
    model: type[_Document], field: str, *, merchant: Participant, livemode: bool, numbers: set[str]
) -> dict[str, str]:
    """The merchant's stored documents among ``numbers``: number -> primary key. One parameter
    carries a whole chunk (an array on PostgreSQL, a JSON array on SQLite): building an IN list
    of thousands of parameters costs more than the lookup."""
    table = connection.ops.quote_name(model._meta.db_table)
    # Number fields are named as their columns.
    column = connection.ops.quote_name(field)
    postgres = connection.vendor == "postgresql"
    among = "= ANY(%s)" if postgres else "IN (SELECT value FROM json_each(%s))"
    sql = (
        f"SELECT {column}, id FROM {table} "  # noqa: S608
        f"WHERE merchant_id = %s AND livemode = %s AND {column} {among}"
    )
    found: dict[str, str] = {}
    with connection.cursor() as cursor:
        for chunk in _chunks(sorted(numbers)):
            cursor.execute(
                sql, [merchant.pk, livemode, list(chunk) if postgres else json.dumps(chunk)]
            )
            found.update(cursor.fetchall())
    return found


@dataclass
class _Checked:
    total: int
    good: list[tuple[int, Values]]
    refused: list[RowError]


def _check_rows(
    kind: Kind,
    rows: Iterator[tuple[int, Mapping[str, object] | RowError]],
    *,
    merchant: Participant,
    livemode: bool,
    now: datetime,
) -> _Checked:
    ctx = context_at(now)
    clean = kind.clean
    number_field = kind.number
    refused: list[RowError] = []
    good: list[tuple[int, Values]] = []
    first_row: dict[str, int] = {}
    total = 0
    for row, raw in rows:
        total += 1
        if total > ROWS_MAX:
            raise _file_error(
                f"A file holds at most {ROWS_MAX} rows; split it.", code="upload_too_many_rows"
            )
        if isinstance(raw, RowError):
            refused.append(raw)
            continue
        try:
            values = clean(raw, ctx)
        except DocumentError as exc:
            refused.append(RowError(row, exc.code, exc.param, exc.message))
            continue
        number = values[number_field]
        earlier = first_row.setdefault(number, row)
        if earlier != row:
            refused.append(
                RowError(
                    row,
                    "duplicate_in_file",
                    number_field,
                    f"{number_field} {number} is on row {earlier} already.",
                )
            )
            continue
        good.append((row, values))
    if total == 0:
        raise _file_error("The file has no rows.", code="upload_empty")

    # What the merchant filed before.
    stored = _stored_numbers(
        kind.model, number_field, merchant=merchant, livemode=livemode, numbers=set(first_row)
    )
    if stored:
        kept = []
        for row, values in good:
            number = values[number_field]
            if number in stored:
                refused.append(
                    RowError(
                        row,
                        "document_exists",
                        number_field,
                        f"The merchant has already filed {kind.name.replace('_', ' ')} {number}.",
                    )
                )
            else:
                kept.append((row, values))
        good = kept

    # The documents each row names.
    for field, model, target_field in kind.links:
        wanted = {values[field] for _, values in good if values[field]}
        targets = _stored_numbers(
            model, target_field, merchant=merchant, livemode=livemode, numbers=wanted
        )
        what = field.removesuffix("_no")
        attname = f"{what}_id"
        kept = []
        for row, values in good:
            number = values[field]
            if not number:
                values[attname] = None
            elif number in targets:
                values[attname] = targets[number]
            else:
                refused.append(
                    RowError(
                        row,
                        f"{what}_missing",
                        field,
                        f"The merchant has filed no {what} {number}; file the {what} first.",
                    )
                )
                continue
            kept.append((row, values))
        good = kept
    refused.sort(key=lambda error: error.row)
    return _Checked(total, good, refused)


# --- writing -------------------------------------------------------------------------------------


def _insert(model: type[_Document], rows: list[dict[str, Any]]) -> None:
    """``rows`` (attname -> value, every concrete field present) in one statement."""
    fields = list(model._meta.concrete_fields)
    columns = [str(field.column) for field in fields]
    names = [field.attname for field in fields]
    table = connection.ops.quote_name(model._meta.db_table)
    quoted = ", ".join(connection.ops.quote_name(column) for column in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor
            # Django's wrapper turns psycopg's errors into its own (IntegrityError, ...).
            with (
                connection.wrap_database_errors,
                raw.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row([row[name] for name in names])
            return
        # As Django's SQLite backend stores an aware time: naive UTC, "YYYY-MM-DD HH:MM:SS[.f]".
        times = {field.attname for field in fields if field.get_internal_type() == "DateTimeField"}
        marks = ", ".join(["%s"] * len(columns))
        cursor.executemany(
            f"INSERT INTO {table} ({quoted}) VALUES ({marks})",  # noqa: S608
            [
                [
                    row[name].astimezone(UTC).replace(tzinfo=None).isoformat(" ")
                    if name in times
                    else row[name]
                    for name in names
                ]
                for row in rows
            ],
        )


def upload_payload(upload: DocumentUpload, *, with_errors: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": upload.pk,
        "object": "document_upload",
        "livemode": upload.livemode,
        "merchant": upload.merchant_id,
        "kind": upload.kind,
        "format": upload.format,
        "mode": upload.mode,
        "status": upload.status,
        "filename": upload.filename,
        "sha256": upload.sha256,
        "rows_total": upload.rows_total,
        "rows_accepted": upload.rows_accepted,
        "rows_rejected": upload.rows_rejected,
    }
    if with_errors:
        body["errors"] = upload.errors
    body["metadata"] = upload.metadata
    body["created_at"] = stamp(upload.created_at)
    return body


def _choice(value: str, param: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise errors.InvalidRequest(
            f"{param} is one of: {', '.join(choices)}.", code="parameter_invalid", param=param
        )
    return value


def upload_create(
    *,
    actor: Principal,
    kind: str,
    fmt: str,
    mode: str,
    data: bytes,
    filename: str = "",
    metadata: Mapping[str, str] | None = None,
    merchant_id: str | None = None,
) -> DocumentUpload:
    """Check and file a bulk file of one ``kind`` of document (see the module's docstring)."""
    spec = KINDS[_choice(kind, "kind", list(KINDS))]
    _choice(fmt, "format", Upload.Format.values)
    _choice(mode, "mode", Upload.Mode.values)
    if len(data) > BYTES_MAX:
        raise errors.PayloadTooLarge(f"An upload file is limited to {BYTES_MAX} bytes.")
    merchant = merchant_for(actor=actor, merchant_id=merchant_id)
    _check_active(merchant)
    return _upload_store(
        actor=actor,
        merchant=merchant,
        spec=spec,
        fmt=fmt,
        mode=mode,
        data=data,
        filename=filename[:200],
        metadata=metadata,
    )


@transaction.atomic(durable=True)
def _upload_store(
    *,
    actor: Principal,
    merchant: Participant,
    spec: Kind,
    fmt: str,
    mode: str,
    data: bytes,
    filename: str,
    metadata: Mapping[str, str] | None,
) -> DocumentUpload:
    text = _text_of(_inflated(data))
    rows = _csv_rows(spec, text) if fmt == Upload.Format.CSV else _jsonl_rows(spec, text)
    now = timezone.now()
    checked = _check_rows(spec, rows, merchant=merchant, livemode=actor.livemode, now=now)
    keep = checked.good if not (checked.refused and mode == Upload.Mode.ALL_OR_NOTHING) else []
    accepted = len(keep)
    upload = DocumentUpload(
        livemode=actor.livemode,
        merchant=merchant,
        kind=spec.name,
        format=fmt,
        mode=mode,
        status=(
            Upload.Status.ACCEPTED
            if accepted == checked.total
            else Upload.Status.PARTIALLY_ACCEPTED
            if accepted
            else Upload.Status.REJECTED
        ),
        filename=filename,
        sha256=hashlib.sha256(data).hexdigest(),
        rows_total=checked.total,
        rows_accepted=accepted,
        rows_rejected=checked.total - accepted,
        errors=[error.as_dict() for error in checked.refused[:ERRORS_KEPT]],
        metadata=dict(metadata or {}),
        created_at=now,
    )
    upload.save(force_insert=True)
    if keep:
        default = spec.model._meta.pk.default
        assert isinstance(default, IdFactory)
        ids = new_ids(default.prefix, accepted)
        metadata_json = "{}"
        common = {
            "livemode": actor.livemode,
            "merchant_id": merchant.pk,
            "upload_id": upload.pk,
            "metadata": metadata_json,
            "created_at": now,
        }
        try:
            with transaction.atomic():
                _insert(
                    spec.model,
                    [
                        {**values, **common, "id": pk}
                        for pk, (_, values) in zip(ids, keep, strict=True)
                    ],
                )
        except IntegrityError:
            raise errors.Conflict(
                "Some of these documents were filed by another request meanwhile; send the "
                "file again to see which.",
                code="upload_conflict",
            ) from None
    event_emit(
        type="document_upload.created",
        owner=merchant,
        data=upload_payload(upload, with_errors=False),
        actor=actor,
    )
    return upload
