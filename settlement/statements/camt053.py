"""ISO 20022 camt.053 (bank-to-customer statement) documents, versions 001.02 to 001.08.

The parse is defensive because statements come from outside: the size is capped, DOCTYPE and
ENTITY declarations are refused before and during parsing (no entity expansion, no external
entities: billion laughs and XXE cannot happen), and a document other than a camt.053
``Document`` of a supported version is refused naming what it is.

Elements that moved between versions are read in both places: ``Sts`` as text (02..06) or
``Sts/Cd`` (07+), parties directly (02..06) or under ``Pty`` (07+), ``BIC`` (02) or ``BICFI``
(03+), a transaction amount as ``Amt`` or ``AmtDtls/TxAmt/Amt``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import NoReturn
from xml.parsers import expat

from settlement.statements.errors import StatementParseError
from settlement.statements.model import (
    CREDIT,
    DEBIT,
    MAX_AMOUNT_DIGITS,
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
    currency_exponent,
    decimal_to_minor,
)

MESSAGE = "camt.053"
SUPPORTED_VERSIONS = range(2, 9)
NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
_NAMESPACE = re.compile(
    re.escape(NAMESPACE_PREFIX) + r"(?P<message>[a-z]{4}\.[0-9]{3})\.001\.(?P<version>[0-9]{2})"
)
# ISO 20022 amounts: unsigned, at most 5 decimals (the sign is the CdtDbtInd beside them).
_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
MAX_FRACTION_DIGITS = 5
_DATE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:Z|[+-][0-9]{2}:[0-9]{2})?")
_DATE_TIME = re.compile(
    r"(?P<main>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]+))?(?P<offset>Z|[+-][0-9]{2}:[0-9]{2})?"
)
ENTRY_STATUSES = frozenset({"BOOK", "PDNG", "INFO", "FUTR"})
_DECLARATIONS = {b"<!doctype": "a DOCTYPE declaration", b"<!entity": "an ENTITY declaration"}


def version_of(namespace: str) -> int:
    """The camt.053 version number (2..8) a document namespace declares, or an error naming it."""
    match = _NAMESPACE.fullmatch(namespace)
    if match is None:
        found = f"namespace {namespace!r}" if namespace else "no namespace"
        raise StatementParseError(
            f"not an ISO 20022 camt.053 document: the Document element has {found}"
        )
    message, version = match.group("message"), int(match.group("version"))
    if message != MESSAGE:
        raise StatementParseError(
            f"not a camt.053 statement: found a {message}.001.{version:02d} document"
        )
    if version not in SUPPORTED_VERSIONS:
        raise StatementParseError(
            f"camt.053.001.{version:02d} is not supported; supported versions are "
            f"camt.053.001.{SUPPORTED_VERSIONS[0]:02d} to camt.053.001.{SUPPORTED_VERSIONS[-1]:02d}"
        )
    return version


def parse_camt053(data: bytes) -> list[Statement]:
    """The statements of a camt.053 document, in document order."""
    root, lines = _parse_xml(data)
    namespace, local = _split(root.tag)
    if local != "Document":
        raise StatementParseError(
            f"not an ISO 20022 camt.053 document: the root element is <{local}>"
            + (f" in namespace {namespace!r}" if namespace else "")
        ).at(line=lines.get(id(root)))
    version = version_of(namespace)
    document = _Node(root, "Document", namespace, lines)
    report = document.require("BkToCstmrStmt")
    header = report.require("GrpHdr")
    message_id = header.require_text("MsgId")
    message_created_at = _date_time(header.require("CreDtTm"))
    statements = report.children("Stmt")
    if not statements:
        report.fail("the document holds no statement (no Stmt element)")
    fmt = f"{MESSAGE}.001.{version:02d}"
    return [
        _statement(node, fmt=fmt, message_id=message_id, message_created_at=message_created_at)
        for node in statements
    ]


def _split(tag: str) -> tuple[str, str]:
    """``{namespace}local`` as its two parts."""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _parse_xml(data: bytes) -> tuple[ET.Element, dict[int, int]]:
    """The element tree of ``data`` and the line each element starts on (by ``id``).

    Expat drives an ElementTree builder directly so that a DOCTYPE, any entity declaration and
    any external entity stop the parse where they appear, whatever the encoding; the byte scan
    before it refuses the common UTF-8 case without parsing anything.
    """
    if len(data) > MAX_FILE_BYTES:
        raise StatementParseError(
            f"the file has {len(data)} bytes; statements are limited to {MAX_FILE_BYTES} bytes"
        )
    if not data.strip():
        raise StatementParseError("the file is empty")
    lowered = data.lower()
    for declaration, kind in _DECLARATIONS.items():
        if declaration in lowered:
            raise StatementParseError(
                f"the document contains {kind}; DTDs and entities are refused"
            )

    parser = expat.ParserCreate(namespace_separator="}")
    builder = ET.TreeBuilder()
    lines: dict[int, int] = {}

    def qualified(name: str) -> str:
        return "{" + name if "}" in name else name

    def start(name: str, attributes: dict[str, str]) -> None:
        element = builder.start(qualified(name), {qualified(k): v for k, v in attributes.items()})
        lines[id(element)] = parser.CurrentLineNumber

    def end(name: str) -> None:
        builder.end(qualified(name))

    def refuse(kind: str) -> NoReturn:
        raise StatementParseError(
            f"the document contains {kind}; DTDs and entities are refused",
            line=parser.CurrentLineNumber,
        )

    def refuse_doctype(*_: object) -> None:
        refuse("a DOCTYPE declaration")

    def refuse_entity(*_: object) -> None:
        refuse("an ENTITY declaration")

    def refuse_external(*_: object) -> int:
        refuse("a reference to an external entity")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise StatementParseError(
            f"not well-formed XML: {expat.ErrorString(exc.code)} (column {exc.offset})",
            line=exc.lineno,
        ) from None
    except (LookupError, UnicodeError) as exc:
        # An XML declaration naming an encoding that does not exist, or bytes that are not in it.
        raise StatementParseError(f"the XML's encoding cannot be read: {exc}") from None
    return builder.close(), lines


@dataclass(frozen=True)
class _Node:
    """An element with its path from the root, for reading and for saying where a fault is."""

    element: ET.Element
    path: str
    namespace: str
    lines: dict[int, int]

    def _tag(self, name: str) -> str:
        return f"{{{self.namespace}}}{name}" if self.namespace else name

    def children(self, name: str) -> list[_Node]:
        found = self.element.findall(self._tag(name))
        return [
            _Node(child, f"{self.path}/{name}[{i}]", self.namespace, self.lines)
            for i, child in enumerate(found, start=1)
        ]

    def find(self, path: str) -> _Node | None:
        node: _Node | None = self
        for name in path.split("/"):
            if node is None:
                return None
            child = node.element.find(node._tag(name))
            node = (
                None
                if child is None
                else _Node(child, f"{node.path}/{name}", self.namespace, self.lines)
            )
        return node

    def require(self, path: str) -> _Node:
        node = self.find(path)
        if node is None:
            self.fail(f"{path} is missing")
        return node

    def text(self, path: str | None = None) -> str | None:
        node = self if path is None else self.find(path)
        if node is None or node.element.text is None:
            return None
        value = node.element.text.strip()
        return value or None

    def require_text(self, path: str) -> str:
        value = self.require(path).text()
        if value is None:
            self.fail(f"{path} is empty")
        return value

    def fail(self, reason: str) -> NoReturn:
        raise self.place(StatementParseError(reason))

    def place(self, error: StatementParseError) -> StatementParseError:
        """``error`` located at this element (its line and short path)."""
        return error.at(line=self.lines.get(id(self.element)), element=self.short_path)

    @property
    def short_path(self) -> str:
        # The Document/BkToCstmrStmt prefix is the same in every message; leave it out.
        for prefix in ("Document/BkToCstmrStmt/", "Document/"):
            if self.path.startswith(prefix):
                return self.path[len(prefix) :]
        return self.path


def _statement(
    node: _Node, *, fmt: str, message_id: str, message_created_at: datetime
) -> Statement:
    created = node.find("CreDtTm")
    period = node.find("FrToDt")
    entries = tuple(_entry(child, index) for index, child in enumerate(node.children("Ntry")))
    return Statement(
        format=fmt,
        statement_id=node.require_text("Id"),
        account=_account(node.require("Acct")),
        message_id=message_id,
        message_created_at=message_created_at,
        created_at=None if created is None else _date_time(created),
        electronic_sequence_number=_integer(node.find("ElctrncSeqNb")),
        legal_sequence_number=_integer(node.find("LglSeqNb")),
        from_date_time=_optional_date_time(period, "FrDtTm"),
        to_date_time=_optional_date_time(period, "ToDtTm"),
        copy_duplicate=node.text("CpyDplctInd"),
        page_number=_integer(node.find("StmtPgntn/PgNb")),
        last_page=_boolean(node.find("StmtPgntn/LastPgInd")),
        balances=tuple(_balance(child) for child in node.children("Bal")),
        entries=entries,
        additional_info=node.text("AddtlStmtInf"),
    )


def _account(node: _Node) -> Account:
    identification = node.require("Id")
    iban = identification.text("IBAN")
    other = identification.text("Othr/Id")
    if iban is None and other is None:
        identification.fail("the account has neither an IBAN nor Othr/Id")
    currency = node.find("Ccy")
    return Account(
        iban=iban,
        other_id=None if iban is not None else other,
        currency=None if currency is None else _currency(currency, currency.text()),
        name=node.text("Nm"),
        owner_name=node.text("Ownr/Nm") or node.text("Ownr/Pty/Nm"),
        servicer_bic=_bic(node.find("Svcr/FinInstnId")),
        servicer_name=node.text("Svcr/FinInstnId/Nm"),
    )


def _balance(node: _Node) -> Balance:
    kind = node.require("Tp/CdOrPrtry")
    type_code = kind.text("Cd") or kind.text("Prtry")
    if type_code is None:
        kind.fail("the balance type has neither Cd nor Prtry")
    minor, currency, stated, rounded = _amount(node.require("Amt"))
    on = node.require("Dt")
    on_date, on_date_time = _date_or_date_time(on)
    return Balance(
        type_code=type_code,
        amount_minor=minor,
        currency=currency,
        credit_debit=_credit_debit(node.require("CdtDbtInd")),
        date=on_date,
        date_time=on_date_time,
        stated_amount=stated,
        rounded=rounded,
    )


def _entry(node: _Node, index: int) -> Entry:
    minor, currency, stated, rounded = _amount(node.require("Amt"))
    credit_debit = _credit_debit(node.require("CdtDbtInd"))
    booking = node.find("BookgDt")
    value = node.find("ValDt")
    booking_date, booking_date_time = (
        (None, None) if booking is None else _date_or_date_time(booking)
    )
    value_date, value_date_time = (None, None) if value is None else _date_or_date_time(value)
    details = tuple(
        _transaction(tx, credit_debit)
        for group in node.children("NtryDtls")
        for tx in group.children("TxDtls")
    )
    sole = details[0] if len(details) == 1 else None
    counterparty = None
    if sole is not None:
        counterparty = sole.debtor if credit_debit == CREDIT else sole.creditor
    return Entry(
        index=index,
        amount_minor=minor,
        currency=currency,
        credit_debit=credit_debit,
        status=_status(node.require("Sts")),
        booking_date=booking_date,
        value_date=value_date,
        booking_date_time=booking_date_time,
        value_date_time=value_date_time,
        reversal=bool(_boolean(node.find("RvslInd"))),
        stated_amount=stated,
        rounded=rounded,
        account_servicer_reference=node.text("AcctSvcrRef"),
        entry_reference=node.text("NtryRef"),
        bank_transaction_code=_bank_transaction_code(node.find("BkTxCd")),
        end_to_end_id=None if sole is None else sole.end_to_end_id,
        instruction_id=None if sole is None else sole.instruction_id,
        transaction_id=None if sole is None else sole.transaction_id,
        remittance=Remittance() if sole is None else sole.remittance,
        counterparty=counterparty,
        additional_info=node.text("AddtlNtryInf"),
        transactions=details,
    )


def _transaction(node: _Node, entry_credit_debit: CreditDebit) -> TransactionDetail:
    """One ``TxDtls``; without its own CdtDbtInd it goes the way of its entry."""
    refs = node.find("Refs")
    amount_node = node.find("Amt") or node.find("AmtDtls/TxAmt/Amt")
    amount = None if amount_node is None else _amount(amount_node)
    indicator = node.find("CdtDbtInd")
    parties = node.find("RltdPties")
    agents = node.find("RltdAgts")
    return TransactionDetail(
        end_to_end_id=_ref(refs, "EndToEndId"),
        instruction_id=_ref(refs, "InstrId"),
        transaction_id=_ref(refs, "TxId"),
        account_servicer_reference=_ref(refs, "AcctSvcrRef"),
        message_id=_ref(refs, "MsgId"),
        payment_information_id=_ref(refs, "PmtInfId"),
        mandate_id=_ref(refs, "MndtId"),
        uetr=_ref(refs, "UETR"),
        proprietary_references=()
        if refs is None
        else tuple(
            ProprietaryReference(type=p.require_text("Tp"), reference=p.require_text("Ref"))
            for p in refs.children("Prtry")
        ),
        amount_minor=None if amount is None else amount[0],
        currency=None if amount is None else amount[1],
        stated_amount=None if amount is None else amount[2],
        rounded=False if amount is None else amount[3],
        credit_debit=entry_credit_debit if indicator is None else _credit_debit(indicator),
        bank_transaction_code=_bank_transaction_code(node.find("BkTxCd")),
        debtor=_party(parties, agents, "Dbtr", "DbtrAcct", "DbtrAgt"),
        creditor=_party(parties, agents, "Cdtr", "CdtrAcct", "CdtrAgt"),
        remittance=_remittance(node.find("RmtInf")),
        additional_info=node.text("AddtlTxInf"),
    )


def _ref(refs: _Node | None, name: str) -> str | None:
    # "NOTPROVIDED" is the placeholder ISO 20022 prescribes for a missing end-to-end id.
    value = None if refs is None else refs.text(name)
    return None if value == "NOTPROVIDED" else value


def _party(
    parties: _Node | None, agents: _Node | None, role: str, account_role: str, agent_role: str
) -> Party | None:
    holder = None if parties is None else parties.find(role)
    if holder is not None and holder.find("Pty") is not None:
        holder = holder.find("Pty")
    account = None if parties is None else parties.find(f"{account_role}/Id")
    agent = None if agents is None else agents.find(f"{agent_role}/FinInstnId")
    name = None if holder is None else holder.text("Nm")
    iban = None if account is None else account.text("IBAN")
    other = None if account is None or iban is not None else account.text("Othr/Id")
    bic = _bic(agent)
    if name is None and iban is None and other is None and bic is None:
        return None
    return Party(name=name, iban=iban, account_id=other, agent_bic=bic)


def _remittance(node: _Node | None) -> Remittance:
    if node is None:
        return Remittance()
    lines = tuple(text for child in node.children("Ustrd") if (text := child.text()) is not None)
    reference: str | None = None
    reference_type: str | None = None
    for structured in node.children("Strd"):
        creditor = structured.find("CdtrRefInf")
        if creditor is not None and (ref := creditor.text("Ref")) is not None:
            reference = ref
            reference_type = creditor.text("Tp/CdOrPrtry/Cd") or creditor.text("Tp/CdOrPrtry/Prtry")
            break
    return Remittance(
        unstructured=lines,
        creditor_reference=reference,
        creditor_reference_type=reference_type,
    )


def _bank_transaction_code(node: _Node | None) -> BankTransactionCode | None:
    if node is None:
        return None
    code = BankTransactionCode(
        domain=node.text("Domn/Cd"),
        family=node.text("Domn/Fmly/Cd"),
        subfamily=node.text("Domn/Fmly/SubFmlyCd"),
        proprietary_code=node.text("Prtry/Cd"),
        proprietary_issuer=node.text("Prtry/Issr"),
    )
    return None if code == BankTransactionCode() else code


def _bic(institution: _Node | None) -> str | None:
    if institution is None:
        return None
    return institution.text("BICFI") or institution.text("BIC")


def _amount(node: _Node) -> tuple[int, str, str, bool]:
    """Minor units, currency, the amount as written, and whether it was rounded."""
    currency = _currency(node, node.element.get("Ccy"))
    text = node.text()
    if text is None:
        node.fail("the amount is empty")
    if text.startswith("-"):
        node.fail(f"{text!r} is negative; ISO 20022 amounts are unsigned (see CdtDbtInd)")
    if not _AMOUNT.fullmatch(text):
        node.fail(f"{text!r} is not a decimal amount")
    whole, _, fraction = text.partition(".")
    if len(fraction) > MAX_FRACTION_DIGITS:
        node.fail(f"{text!r} has more than {MAX_FRACTION_DIGITS} decimals")
    if len(whole.lstrip("0")) + len(fraction) > MAX_AMOUNT_DIGITS:
        node.fail(f"{text!r} has more than {MAX_AMOUNT_DIGITS} digits")
    try:
        minor, rounded = decimal_to_minor(Decimal(text), currency, allow_rounding=True)
    except StatementParseError as exc:
        raise node.place(exc) from None
    return minor, currency, text, rounded


def _currency(node: _Node, code: str | None) -> str:
    if code is None:
        node.fail("the currency (Ccy) is missing")
    code = code.strip()
    try:
        currency_exponent(code)
    except StatementParseError as exc:
        raise node.place(exc) from None
    return code


def _credit_debit(node: _Node) -> CreditDebit:
    value = node.text()
    if value == CREDIT:
        return CREDIT
    if value == DEBIT:
        return DEBIT
    node.fail(f"{value!r} is not a credit/debit indicator (CRDT or DBIT)")


def _status(node: _Node) -> str:
    value = node.text() or node.text("Cd") or node.text("Prtry")
    if value not in ENTRY_STATUSES:
        node.fail(f"{value!r} is not an entry status ({', '.join(sorted(ENTRY_STATUSES))})")
    return value


def _integer(node: _Node | None) -> int | None:
    if node is None:
        return None
    value = node.text()
    if value is None or not re.fullmatch(r"[0-9]{1,18}", value):
        node.fail(f"{value!r} is not a whole number")
    return int(value)


def _boolean(node: _Node | None) -> bool | None:
    if node is None:
        return None
    value = node.text()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    node.fail(f"{value!r} is not a boolean (true or false)")


def _date_or_date_time(node: _Node) -> tuple[date, datetime | None]:
    """A ``Dt`` or a ``DtTm`` choice: the date (as the bank wrote it) and the instant if given."""
    day = node.find("Dt")
    if day is not None:
        return _date(day), None
    moment = node.find("DtTm")
    if moment is None:
        node.fail("neither Dt nor DtTm is given")
    instant = _date_time(moment)
    match = _DATE_TIME.fullmatch(moment.text() or "")
    assert match is not None  # _date_time accepted it
    return date.fromisoformat(match.group("main")[:10]), instant


def _optional_date_time(parent: _Node | None, name: str) -> datetime | None:
    node = None if parent is None else parent.find(name)
    return None if node is None else _date_time(node)


def _date(node: _Node) -> date:
    value = node.text() or ""
    match = _DATE.fullmatch(value)
    if match is None:
        node.fail(f"{value!r} is not an ISO date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        node.fail(f"{value!r} is not a calendar date")


def _date_time(node: _Node) -> datetime:
    """An ISO 8601 date-time; one written without an offset is taken as UTC."""
    value = node.text() or ""
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        node.fail(f"{value!r} is not an ISO date-time (YYYY-MM-DDThh:mm:ss[.fff][offset])")
    fraction = (match.group("fraction") or "")[:6].ljust(6, "0")
    offset = match.group("offset") or "+00:00"
    try:
        parsed = datetime.fromisoformat(f"{match.group('main')}.{fraction}{offset}")
    except ValueError:
        node.fail(f"{value!r} is not a valid date-time")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
