"""``hub audit verify``: the real command in a subprocess, on bundle files written here, with
no database reachable and no Django settings importable, so it is proven to need neither."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.transparency import merkle
from hub.transparency.bundle import CHECKS, build_bundle
from hub.transparency.checkpoint import checkpoint_body, public_key_raw, sign_note, vkey
from hub.transparency.jcs import canonicalize

ORIGIN = "hub.test/transparency/test"
SIZE = 40

_script = Path(sys.executable).with_name("hub")
HUB = [str(_script)] if _script.exists() else [sys.executable, "-m", "hub.cli"]


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def bundle(key: Ed25519PrivateKey) -> dict[str, Any]:
    receipts = [
        {
            "id": f"rcpt_{n:04d}",
            "livemode": False,
            "amount": {"amount": f"{1000 + n}.00", "currency": "CNY"},
        }
        for n in range(SIZE)
    ]
    tree = merkle.MerkleTree(merkle.leaf_hash(canonicalize(r)) for r in receipts)
    body = checkpoint_body(
        origin=ORIGIN, size=SIZE, root=tree.root(), timestamp=datetime(2026, 11, 29, tzinfo=UTC)
    )
    return build_bundle(
        receipt=receipts[21],
        signature=key.sign(canonicalize(receipts[21])),
        public_key=vkey(ORIGIN, public_key_raw(key)),
        origin=ORIGIN,
        leaf_index=21,
        tree_size=SIZE,
        leaf_hash=tree.leaf(21),
        inclusion_proof=tree.inclusion_proof(21),
        checkpoint=sign_note(body, name=ORIGIN, private_key=key),
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Nothing to connect to and no settings to import: the command must not try either.
    env["DATABASE_URL"] = "postgres://nobody@127.0.0.1:1/nowhere"
    env["CELERY_BROKER_URL"] = "redis://127.0.0.1:1/0"
    env["DJANGO_SETTINGS_MODULE"] = "no_such_settings_module"
    env["HUB_DATA_DIR"] = "/nonexistent/hub-data"
    return env


def _run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HUB, "audit", "verify", *args],
        cwd=cwd,
        env=_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _write(tmp_path: Path, value: object, name: str = "bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


def test_good_bundle_exits_0_and_prints_each_check(tmp_path: Path, bundle: dict[str, Any]) -> None:
    path = _write(tmp_path, bundle)
    result = _run(str(path), "--allow-unpinned", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(CHECKS) + 1
    for line, name in zip(lines, CHECKS, strict=False):
        assert line.startswith("ok  ")
        assert name in line
    assert lines[-1].startswith(f"verified: rcpt_0021 is leaf 21 of {SIZE} in log {ORIGIN}")
    assert "keys not pinned" in lines[-1]
    assert result.stderr == ""
    assert not Path("/nonexistent/hub-data").exists()


def test_without_a_trusted_key_the_bundle_is_not_vouched_for(
    tmp_path: Path, bundle: dict[str, Any]
) -> None:
    result = _run(str(_write(tmp_path, bundle)), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "FAILED: key_pinned"


def test_a_bundle_of_another_log_than_expected_exits_1(
    tmp_path: Path, bundle: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    live = "hub.test/transparency/live"
    result = _run(
        str(_write(tmp_path, bundle)),
        "--key",
        vkey(ORIGIN, public_key_raw(key)),
        "--origin",
        live,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "FAILED: origin"


def test_pinned_key_and_json_output(
    tmp_path: Path, bundle: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    path = _write(tmp_path, bundle)
    result = _run(str(path), "--key", vkey(ORIGIN, public_key_raw(key)), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["pinned"] is True
    assert report["failed"] == []
    assert [c["name"] for c in report["checks"]] == list(CHECKS)


def test_altered_receipt_exits_1_naming_the_failed_checks(
    tmp_path: Path, bundle: dict[str, Any]
) -> None:
    altered = json.loads(json.dumps(bundle))
    altered["receipt"]["amount"]["amount"] = "1.00"
    result = _run(str(_write(tmp_path, altered)), "--allow-unpinned", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[-1] == "FAILED: receipt_signature, leaf_hash"
    failed = [line for line in lines if line.startswith("FAIL ")]
    assert [line.split()[1] for line in failed] == ["receipt_signature", "leaf_hash"]


def test_untrusted_key_exits_1(tmp_path: Path, bundle: dict[str, Any]) -> None:
    stranger = vkey(ORIGIN, public_key_raw(Ed25519PrivateKey.generate()))
    result = _run(str(_write(tmp_path, bundle)), "--key", stranger, "--json", cwd=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["failed"] == ["checkpoint_signature", "key_pinned"]


def test_reads_standard_input(tmp_path: Path, bundle: dict[str, Any]) -> None:
    result = _run("-", "--allow-unpinned", cwd=tmp_path, stdin=json.dumps(bundle))
    assert result.returncode == 0, result.stdout + result.stderr


def test_json_that_is_not_a_bundle_exits_1(tmp_path: Path) -> None:
    result = _run(str(_write(tmp_path, [1, 2, 3])), cwd=tmp_path)
    assert result.returncode == 1
    assert "the bundle is a JSON array, not an object" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not JSON"),
        (b"{not json", "is not JSON"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": 1, "a": 2}', "duplicate object member 'a'"),
        (b"\xff\xfe{}", "is not UTF-8"),
    ],
)
def test_unreadable_files_exit_2(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    result = _run(str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_missing_file_and_directory_exit_2(tmp_path: Path) -> None:
    missing = _run(str(tmp_path / "missing.json"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    directory = _run(str(tmp_path), cwd=tmp_path)
    assert directory.returncode == 2
    assert "cannot read" in directory.stderr


def test_malformed_key_and_usage_exit_2(tmp_path: Path, bundle: dict[str, Any]) -> None:
    path = _write(tmp_path, bundle)
    bad_key = _run(str(path), "--key", "not-a-key", cwd=tmp_path)
    assert bad_key.returncode == 2
    assert "is not a verifier key" in bad_key.stderr
    no_file = _run(cwd=tmp_path)
    assert no_file.returncode == 2
    assert "usage: hub audit verify" in no_file.stderr
    help_ = _run("--help", cwd=tmp_path)
    assert help_.returncode == 0
    assert "--key VKEY" in help_.stdout
