"""The conformance kit through its CLI, as a bank's engineer runs it: ``hub adapters list`` shows
the installed adapters (the example package's among them), ``hub adapters conformance`` passes
the built-in adapters and the example package, and fails adapters that misbehave."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.builtin.bank import GenericBankAdapter
from adapters.builtin.stripe_like import StripeLikeAdapter
from adapters.capabilities import WebhookRejected
from adapters.conformance.runner import pytest_command
from adapters.errors import UnknownOutcome
from adapters.interface import Outcome, PayoutRequest, PayoutResult

HUB = str(Path(sys.executable).with_name("hub"))
ROOT = Path(__file__).resolve().parents[2]
FAILED = re.compile(r"^(?:FAILED|ERROR) \S+::(\S+)", re.MULTILINE)


class BrokenBankAdapter(GenericBankAdapter):
    """Reports a payout as made when the bank's answer was lost (a 5xx, a timeout)."""

    manifest = replace(GenericBankAdapter.manifest, name="broken_bank")

    def create_payout(self, request: PayoutRequest) -> PayoutResult:
        try:
            return super().create_payout(request)
        except UnknownOutcome:
            return PayoutResult(request.reference, None, request.amount, Outcome.SUCCEEDED)


class TrustingPspAdapter(StripeLikeAdapter):
    """Accepts any notification that carries a signature header, without checking it."""

    manifest = replace(StripeLikeAdapter.manifest, name="trusting_psp")

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> None:
        if not any(k.lower() == "stripe-signature" for k in headers):
            raise WebhookRejected("the notification is not signed")


class HooklessBankAdapter(GenericBankAdapter):
    """Does not say how to start a sandbox for it."""

    manifest = replace(GenericBankAdapter.manifest, name="hookless_bank")
    conformance_sandbox = None  # type: ignore[assignment]


def hub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HUB, "adapters", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )


def failed_checks(output: str) -> set[str]:
    return set(FAILED.findall(output))


def test_list_shows_the_builtin_adapters_and_the_example_package() -> None:
    result = hub("list")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "DISTRIBUTION", "CAPABILITIES"]
    rows = {line.split()[0]: line.split(maxsplit=3)[1:] for line in lines[1:]}
    assert rows["example_bank"] == [
        "0.1.0",
        "hub-adapter-example",
        "bank_payouts, bank_statements, dealing_rates",
    ]
    assert rows["bank"][:2] == ["1.0.0", "settlement-hub"]
    assert rows["stripe_like"][1:] == ["settlement-hub", "payment_institution"]
    assert rows["ecb"][1:] == ["settlement-hub", "rate_source"]


def test_list_as_json() -> None:
    result = hub("list", "--json")

    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["example_bank"] == {
        "name": "example_bank",
        "version": "0.1.0",
        "distribution": "hub-adapter-example",
        "capabilities": ["bank_payouts", "bank_statements", "dealing_rates"],
        "conformance_hook": True,
    }


def test_the_example_package_passes_the_kit() -> None:
    result = hub("conformance", "example_bank")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 passed, 13 deselected" in result.stdout
    assert "Conformance passed: example_bank" in result.stdout
    assert failed_checks(result.stdout) == set()
    # The bank checks ran, through the fault injection too; no payment or rate checks did.
    assert "test_create_payout_whose_answer_is_lost[example_bank-timeout_after] PASSED" in (
        result.stdout
    )
    assert "payin" not in result.stdout


def test_every_installed_adapter_passes_the_kit() -> None:
    result = hub("conformance", "--all")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Conformance passed: bank, ecb, example_bank, stripe_like" in result.stdout
    assert re.search(r"^=+ 49 passed in [\d.]+s =+$", result.stdout, re.MULTILINE), result.stdout
    for name in ("bank", "ecb", "example_bank", "stripe_like"):
        assert f"test_manifest_names_the_entry_point[{name}] PASSED" in result.stdout


def test_an_unknown_adapter_is_refused() -> None:
    result = hub("conformance", "no_such_bank")

    assert result.returncode == 1
    assert "no installed adapter is named no_such_bank" in result.stderr
    assert "installed: bank, ecb, example_bank, stripe_like" in result.stderr


def fake_distribution(tmp_path: Path) -> dict[str, str]:
    """An installed distribution (a ``.dist-info`` on the path) whose ``hub.adapters`` entry points
    name the misbehaving adapters above: discovered exactly as a real package would be."""
    dist = tmp_path / "broken_adapters-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-adapters\nVersion: 1.0\n")
    module = "tests.adapters.test_conformance"
    (dist / "entry_points.txt").write_text(
        "[hub.adapters]\n"
        f"broken_bank = {module}:BrokenBankAdapter\n"
        f"trusting_psp = {module}:TrustingPspAdapter\n"
        f"hookless_bank = {module}:HooklessBankAdapter\n"
    )
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}


def test_the_kit_fails_adapters_that_misbehave(tmp_path: Path) -> None:
    env = fake_distribution(tmp_path)
    listed = hub("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^broken_bank +1\.0\.0 +broken-adapters ", listed.stdout, re.MULTILINE)

    result = hub("conformance", "broken_bank", "trusting_psp", "hookless_bank", env=env)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "conformance failed for broken_bank, trusting_psp, hookless_bank" in result.stderr
    failed = failed_checks(result.stdout)
    # A false success on a lost answer, whether a timeout or a 5xx after the bank processed it.
    assert {
        "test_create_payout_whose_answer_is_lost[broken_bank-timeout_after]",
        "test_create_payout_whose_answer_is_lost[broken_bank-http_500_after]",
    } == {f for f in failed if "[broken_bank" in f}
    assert "false succeeded: create_payout ('payout_create' is not idempotent)" in result.stdout
    # Notifications that do not verify were accepted.
    assert {
        "test_webhook_rejects_a_tampered_body[trusting_psp]",
        "test_webhook_rejects_a_stale_notification[trusting_psp]",
    } == {f for f in failed if "[trusting_psp" in f}
    # No hook: every check that needs the sandbox errors, and says why.
    hookless = {f for f in failed if "[hookless_bank" in f}
    assert len(hookless) == 10
    assert "test_manifest_names_the_entry_point[hookless_bank]" not in hookless
    assert "has no conformance_sandbox() classmethod" in result.stdout


def test_pytest_command_runs_the_kit_alone() -> None:
    command = pytest_command(["bank", "ecb"], verbose=False, keyword="manifest")

    assert command[:4] == [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "adapters/conformance/suite.py"),
    ]
    assert command[-6:] == ["-k", "manifest", "--adapter", "bank", "--adapter", "ecb"]
    assert ["-c", os.devnull] == command[4:6]
    assert "-q" in command


@pytest.mark.parametrize("args", [[], ["bank", "--all"]])
def test_conformance_needs_names_or_all(args: list[str]) -> None:
    result = hub("conformance", *args)

    assert result.returncode == 1
    assert "name the adapters to check, or --all" in result.stderr or "not both" in (result.stderr)
