"""``hub statements parse FILE [--json] [--mapping M]``: output, exit status, nothing stored."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from settlement.statements import MAX_FILE_BYTES, parse_statement_file, statements_to_json
from tests.settlement.test_camt053 import DATA, ORACLE_BALANCE_TYPES, SAMPLES, oracle

WRONG = DATA / "camt053.v2.wrong.xml"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("statements", "parse", *args, stdout=out)
    return out.getvalue()


def hub(*args: str) -> subprocess.CompletedProcess[str]:
    """The real ``hub`` command in a child process, as an operator runs it."""
    script = Path(sys.executable).with_name("hub")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "hub.cli"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )


def signed(item: dict[str, Any]) -> int:
    minor: int = item["amount_minor"]
    return minor if item["credit_debit"] == "CRDT" else -minor


@pytest.mark.parametrize("name", SAMPLES)
def test_json_output_is_the_parse_and_agrees_with_the_oracle(name: str) -> None:
    path = DATA / f"{name}.xml"
    output = run(str(path), "--json")
    document = json.loads(output)

    assert output.rstrip("\n") == statements_to_json(parse_statement_file(path.read_bytes()))
    expected = oracle(name)
    assert len(document) == len(expected["getRecords"])
    statements = {item["statement_id"]: item for item in document}
    for entry in expected["getEntries"]:
        record = entry["getRecord"]
        statement = statements[record["getId"]]
        assert statement["message_id"] == expected["getGroupHeader"]["getMessageId"]
        assert (statement["account"]["iban"] or statement["account"]["other_id"]) == record[
            "getAccount"
        ]["getIdentification"]
        assert [
            (b["type"], signed(b), b["currency"], b["date"]) for b in statement["balances"]
        ] == [
            (
                ORACLE_BALANCE_TYPES[b["getType"]],
                int(b["getAmount"]["getAmount"]),
                b["getAmount"]["getCurrency"]["getCode"],
                b["getDate"]["0"][:10],
            )
            for b in record["getBalances"]
        ]
        ours = statement["entries"][entry["getIndex"]]
        assert (signed(ours), ours["currency"], ours["credit_debit"], ours["value_date"]) == (
            int(entry["getAmount"]["getAmount"]),
            entry["getAmount"]["getCurrency"]["getCode"],
            entry["getCreditDebitIndicator"],
            entry["getValueDate"]["0"][:10],
        )
        assert ours["account_servicer_reference"] == entry["getAccountServicerReference"]
        assert ours["end_to_end_id"] == entry["getTransactionDetail"]["getReference"].get(
            "getEndToEndId"
        )


def test_five_decimals_json_amounts() -> None:
    (statement,) = json.loads(run(str(DATA / "camt053.v2.five.decimals.xml"), "--json"))
    entry = statement["entries"][0]

    assert {key: entry[key] for key in ("amount", "amount_minor", "stated_amount", "rounded")} == {
        "amount": "8.85",
        "amount_minor": 885,
        "stated_amount": "8.850",
        "rounded": False,
    }
    assert statement["opening_balance"]["amount"] == "18.15"
    assert statement["closing_balance"]["amount"] == "27.05"


def test_csv_with_a_mapping_file_prints_exact_json(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps(
            {
                "booking_date": "Date",
                "amount": "Amount",
                "fixed_currency": "KRW",
                "reference": "Ref",
                "statement_id": "kr-2024-03",
                "account": "110-123-456789",
                "opening_balance": "500000",
            }
        )
    )
    statement = tmp_path / "statement.csv"
    statement.write_text("Date,Amount,Ref\n2024-03-01,150000,A1\n2024-03-02,-20000,A2\n")

    document = json.loads(run(str(statement), "--json", "--mapping", str(mapping)))

    entry = {
        "amount": "150000",
        "amount_minor": 150000,
        "currency": "KRW",
        "credit_debit": "CRDT",
        "stated_amount": "150000",
        "rounded": False,
        "status": "BOOK",
        "reversal": False,
        "booking_date": "2024-03-01",
        "booking_date_time": None,
        "value_date": None,
        "value_date_time": None,
        "account_servicer_reference": "A1",
        "entry_reference": None,
        "bank_transaction_code": None,
        "end_to_end_id": None,
        "instruction_id": None,
        "transaction_id": None,
        "remittance_information": {
            "unstructured": [],
            "creditor_reference": None,
            "creditor_reference_type": None,
        },
        "counterparty": None,
        "additional_info": None,
        "transactions": [],
    }
    opening = {
        "type": "OPBD",
        "amount": "500000",
        "amount_minor": 500000,
        "currency": "KRW",
        "credit_debit": "CRDT",
        "date": "2024-03-01",
        "date_time": None,
        "stated_amount": "500000",
        "rounded": False,
    }
    assert document == [
        {
            "format": "csv",
            "message_id": None,
            "message_created_at": None,
            "statement_id": "kr-2024-03",
            "electronic_sequence_number": None,
            "legal_sequence_number": None,
            "created_at": None,
            "from_date_time": None,
            "to_date_time": None,
            "copy_duplicate": None,
            "page_number": None,
            "last_page": None,
            "account": {
                "iban": None,
                "other_id": "110-123-456789",
                "currency": "KRW",
                "name": None,
                "owner_name": None,
                "servicer_bic": None,
                "servicer_name": None,
            },
            "opening_balance": opening,
            "closing_balance": None,
            "balances": [opening],
            "entries": [
                {"index": 0, **entry},
                {
                    **entry,
                    "index": 1,
                    "amount": "20000",
                    "amount_minor": 20000,
                    "credit_debit": "DBIT",
                    "stated_amount": "-20000",
                    "booking_date": "2024-03-02",
                    "account_servicer_reference": "A2",
                },
            ],
            "additional_info": None,
        }
    ]


def test_csv_without_mapping_uses_the_default_one(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text(
        "booking_date,value_date,amount,currency,reference,counterparty,description\n"
        "2024-03-01,2024-03-01,1500.00,CNY,R1,Weihai Trading,Order 17\n"
    )

    (statement,) = json.loads(run(str(path), "--json"))

    assert statement["entries"][0]["amount"] == "1500.00"
    assert statement["entries"][0]["counterparty"]["name"] == "Weihai Trading"


def test_human_summary() -> None:
    output = run(str(DATA / "camt053.v2.multi.statement.xml"))

    assert output.splitlines() == [
        "camt.053.001.02 statement 253EURNL26VAYB8060476890 (message CAMT053RIB000000000001)",
        "  account NL26VAYB8060476890 EUR",
        "  OPBD           18.15 EUR CRDT on 2014-12-30",
        "  CLBD           27.00 EUR CRDT on 2014-12-31",
        "  1 entry",
        "    #0   2014-12-31            +8.85 EUR BOOK 000000001  Transaction Description 1",
        "camt.053.001.02 statement 254EURNL26VAYB8060476890 (message CAMT053RIB000000000001)",
        "  account NL26VAYB8060476890 EUR",
        "  OPBD           27.00 EUR CRDT on 2014-12-30",
        "  CLBD           20.00 EUR CRDT on 2014-12-31",
        "  1 entry",
        "    #0   2014-12-31            -7.00 EUR BOOK 000000002  Company Name 2 / "
        "Transaction Description 2",
        "2 statements, 2 entries; nothing stored.",
    ]


def test_wrong_file_exits_2_with_one_line_on_stderr() -> None:
    result = hub("statements", "parse", str(WRONG), "--json")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "CommandError: camt053.v2.wrong.xml: line 3, BkToCstmrStmt: the document holds no "
        "statement (no Stmt element)\n"
    )


def test_good_file_exits_0_from_the_real_command() -> None:
    result = hub("statements", "parse", str(DATA / "camt053.v8.xml"), "--json")

    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)[0]["entries"][0]["amount_minor"] == 885


def test_wrong_file_through_call_command_raises_with_status_2() -> None:
    with pytest.raises(CommandError) as caught:
        run(str(WRONG))

    assert caught.value.returncode == 2
    assert str(caught.value) == (
        "camt053.v2.wrong.xml: line 3, BkToCstmrStmt: the document holds no statement "
        "(no Stmt element)"
    )


def test_unreadable_inputs_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.xml"
    big = tmp_path / "big.xml"
    with big.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    bad_mapping = tmp_path / "mapping.json"
    bad_mapping.write_text('{"amout": "x", "fixed_currency": "EUR"}')
    not_json = tmp_path / "mapping2.json"
    not_json.write_text("booking_date=Date")
    csv_file = tmp_path / "s.csv"
    csv_file.write_text("Date,Amount\n")

    cases = {
        (str(missing),): f"{missing}: No such file or directory",
        (str(big),): (
            f"big.xml: the file has {MAX_FILE_BYTES + 1} bytes; statements are limited to "
            f"{MAX_FILE_BYTES} bytes"
        ),
        (str(csv_file), "--mapping", str(bad_mapping)): f"{bad_mapping}: CSV mapping: unknown key",
        (str(csv_file), "--mapping", str(not_json)): f"{not_json}: not a readable JSON file",
    }
    for args, message in cases.items():
        with pytest.raises(CommandError) as caught:
            run(*args)
        assert caught.value.returncode == 2, args
        assert str(caught.value).startswith(message), str(caught.value)
