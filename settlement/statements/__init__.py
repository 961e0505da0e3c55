"""Bank statement files read into plain dataclasses: ISO 20022 camt.053 and mapped CSV.

Parsing stores nothing and imports nothing from Django, so that the same code serves the import
service, the ``hub statements parse`` command and anyone checking a file offline.
"""

from __future__ import annotations

from settlement.statements.camt053 import SUPPORTED_VERSIONS, parse_camt053
from settlement.statements.csv_mapped import DEFAULT_CSV_MAPPING, CsvMapping, parse_csv
from settlement.statements.errors import CsvMappingError, StatementParseError
from settlement.statements.model import (
    CURRENCY_EXPONENTS,
    MAX_FILE_BYTES,
    Account,
    Balance,
    BankTransactionCode,
    CreditDebit,
    Entry,
    Party,
    ProprietaryReference,
    Remittance,
    Statement,
    TransactionDetail,
    format_minor,
    parse_major,
    statements_to_json,
)

__all__ = [
    "CURRENCY_EXPONENTS",
    "DEFAULT_CSV_MAPPING",
    "MAX_FILE_BYTES",
    "SUPPORTED_VERSIONS",
    "Account",
    "Balance",
    "BankTransactionCode",
    "CreditDebit",
    "CsvMapping",
    "CsvMappingError",
    "Entry",
    "Party",
    "ProprietaryReference",
    "Remittance",
    "Statement",
    "StatementParseError",
    "TransactionDetail",
    "format_minor",
    "is_xml",
    "parse_camt053",
    "parse_csv",
    "parse_major",
    "parse_statement_file",
    "statements_to_json",
]


def is_xml(data: bytes) -> bool:
    """Whether ``data`` looks like an XML document: its first character is ``<``."""
    head = data[:1024]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="ignore").lstrip("\ufeff \t\r\n").startswith("<")
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"<")


def parse_statement_file(
    data: bytes, *, filename: str = "", csv_mapping: CsvMapping | None = None
) -> list[Statement]:
    """The statements in a file, recognised by content: camt.053 XML, otherwise mapped CSV.

    A CSV file needs ``csv_mapping`` (its columns, date format and separators); ``filename``
    only serves to word the error when a file named ``*.xml`` is not XML.
    """
    if len(data) > MAX_FILE_BYTES:
        raise StatementParseError(
            f"the file has {len(data)} bytes; statements are limited to {MAX_FILE_BYTES} bytes"
        )
    if not data.strip():
        raise StatementParseError("the file is empty")
    if is_xml(data):
        return parse_camt053(data)
    if filename.lower().endswith(".xml"):
        raise StatementParseError(f"{filename} is not XML: it does not start with '<'")
    if csv_mapping is None:
        raise StatementParseError(
            "the file is not XML, and reading it as CSV needs a CSV mapping of its columns"
        )
    return [parse_csv(data, csv_mapping)]
