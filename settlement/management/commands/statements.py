"""``hub statements parse FILE [--json] [--mapping MAPPING.json]``: what a statement file says.

Reads a camt.053 XML or mapped CSV bank statement and prints it; nothing is stored. A file that
cannot be read ends the command with status 2 and a one-line reason on stderr.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser, RawDescriptionHelpFormatter
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from settlement.statements import (
    DEFAULT_CSV_MAPPING,
    MAX_FILE_BYTES,
    Balance,
    CsvMapping,
    Entry,
    Statement,
    StatementParseError,
    format_minor,
    parse_statement_file,
    statements_to_json,
)

# Exit status for a file or mapping that cannot be read, as for a usage error.
BAD_INPUT = 2

PARSE_HELP = f"""\
Read a bank statement file and print what it says; nothing is stored.

The format is recognised by content: a file starting with '<' is an ISO 20022 camt.053
document (camt.053.001.02 to .08); anything else is CSV, read through a mapping of its
columns (--mapping, a JSON object of CsvMapping fields; see docs/statements.md).

Without --mapping, CSV files use the default mapping: a header row with the columns
  {", ".join(DEFAULT_CSV_MAPPING.columns().values())}
comma-delimited, dates YYYY-MM-DD, '.' as decimal separator, amounts signed in major units
(a leading '-' is a debit), e.g.
  booking_date,value_date,amount,currency,reference,counterparty,description
  2024-03-01,2024-03-01,1500.00,CNY,R1,Weihai Trading,Order 17

Exit status 2, with the reason on stderr, when the file cannot be read.
"""


class Command(BaseCommand):
    help = "Bank statements: `hub statements parse FILE [--json]` prints a file's parse."
    requires_system_checks: list[str] = []  # reads a file; no database or app checks needed

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        parse = actions.add_parser(
            "parse",
            help="print the parse of a camt.053 or CSV statement file (stores nothing)",
            description=PARSE_HELP,
            formatter_class=RawDescriptionHelpFormatter,
        )
        parse.add_argument("file", metavar="FILE", help="the statement file")
        parse.add_argument(
            "--json", action="store_true", help="print one JSON document: the list of statements"
        )
        parse.add_argument(
            "--mapping",
            metavar="MAPPING.json",
            help="the CSV mapping (JSON object of CsvMapping fields); ignored for XML",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        mapping = _mapping(options["mapping"])
        data = _read(path)
        try:
            statements = parse_statement_file(data, filename=path.name, csv_mapping=mapping)
        except StatementParseError as exc:
            raise CommandError(f"{path.name}: {exc}", returncode=BAD_INPUT) from None
        if options["json"]:
            self.stdout.write(statements_to_json(statements))
            return
        for statement in statements:
            self._summary(statement)
        entries = sum(len(statement.entries) for statement in statements)
        self.stdout.write(
            f"{_count(len(statements), 'statement')}, {_count(entries, 'entry', 'entries')}; "
            "nothing stored."
        )

    def _summary(self, statement: Statement) -> None:
        account = statement.account
        self.stdout.write(
            f"{statement.format} statement {statement.statement_id}"
            + (f" (message {statement.message_id})" if statement.message_id else "")
        )
        self.stdout.write(
            f"  account {account.identification or '-'}"
            + (f" {account.currency}" if account.currency else "")
            + (f" ({account.owner_name})" if account.owner_name else "")
        )
        for balance in statement.balances:
            self.stdout.write(f"  {_balance(balance)}")
        self.stdout.write(f"  {_count(len(statement.entries), 'entry', 'entries')}")
        for entry in statement.entries:
            self.stdout.write(f"    {_entry(entry)}")


def _mapping(option: str | None) -> CsvMapping:
    if option is None:
        return DEFAULT_CSV_MAPPING
    try:
        raw = json.loads(Path(option).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(
            f"{option}: not a readable JSON file: {exc}", returncode=BAD_INPUT
        ) from None
    if not isinstance(raw, dict):
        raise CommandError(f"{option}: the CSV mapping must be a JSON object", returncode=BAD_INPUT)
    try:
        return CsvMapping.from_dict(raw)
    except StatementParseError as exc:
        raise CommandError(f"{option}: {exc}", returncode=BAD_INPUT) from None


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CommandError(
                f"{path.name}: the file has {size} bytes; statements are limited to "
                f"{MAX_FILE_BYTES} bytes",
                returncode=BAD_INPUT,
            )
        with path.open("rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror or exc}", returncode=BAD_INPUT) from None


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def _balance(balance: Balance) -> str:
    return (
        f"{balance.type_code:<4} {format_minor(balance.amount_minor, balance.currency):>15} "
        f"{balance.currency} {balance.credit_debit} on {balance.date.isoformat()}"
    )


def _entry(entry: Entry) -> str:
    sign = "+" if entry.credit_debit == "CRDT" else "-"
    amount = f"{sign}{format_minor(entry.amount_minor, entry.currency)}"
    booked = entry.booking_date.isoformat() if entry.booking_date else "-" * 10
    reference = (
        entry.account_servicer_reference
        or entry.end_to_end_id
        or entry.entry_reference
        or entry.remittance.creditor_reference
        or "-"
    )
    text = " / ".join(
        part
        for part in (
            entry.counterparty.name if entry.counterparty else None,
            *entry.remittance.unstructured,
        )
        if part
    )
    line = f"#{entry.index:<3} {booked} {amount:>16} {entry.currency} {entry.status} {reference}"
    return f"{line}  {text}" if text else line
