"""One row in, as a prepared statement on PostgreSQL: the ORM builds an INSERT's text anew for
every row, which on the hottest paths costs more than the insert itself."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import psycopg
from django.db import connection
from django.db.models import Model

_STATEMENTS: dict[type[Model], tuple[str, list[Any]]] = {}


def insert(row: Model) -> None:
    """``row.save(force_insert=True)`` for a model whose primary key the caller has set."""
    if connection.vendor != "postgresql":
        row.save(force_insert=True)
        return
    sql, values = insert_statement(row)
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, values, prepare=True)
    row._state.adding = False
    row._state.db = "default"


def insert_statement(row: Model) -> tuple[str, list[Any]]:
    """The ``INSERT`` of ``row`` (every column) and its parameters, as PostgreSQL takes them:
    for ``insert``, or for a caller that sends it within a statement of its own."""
    model = type(row)
    if model not in _STATEMENTS:
        fields = list(model._meta.concrete_fields)
        columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
        marks = ", ".join(["%s"] * len(fields))
        table = connection.ops.quote_name(model._meta.db_table)
        _STATEMENTS[model] = (f"INSERT INTO {table} ({columns}) VALUES ({marks})", fields)  # noqa: S608
    sql, fields = _STATEMENTS[model]
    return sql, [f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields]


def copy_rows(
    model: type[Model], columns: Sequence[str], types: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Many rows at once: one binary COPY on PostgreSQL (no SQL text; ``types`` are
    PostgreSQL's types of ``columns``), ``executemany`` elsewhere. Model defaults and ``save()``
    are bypassed: the rows are complete."""
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with (
            connection.wrap_database_errors,
            psycopg.Cursor(connection.connection) as cursor,
            cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join(["%s"] * len(columns))
    with connection.cursor() as sqlite:
        sqlite.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608
            [[_adapt(value) for value in row] for row in rows],
        )


def _adapt(value: Any) -> Any:
    """What SQLite's driver takes for the values a COPY row may hold."""
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
