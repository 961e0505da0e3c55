"""``hub audit verify BUNDLE.json [--key VKEY ...] [--json]``: check a receipt bundle offline.

Runs before Django is set up: it reads one file and needs no settings, no database and no
network. Exit status 0 when every check passes, 1 when any fails (the failed checks are
named), 2 when the file cannot be read or is not JSON, or a ``--key`` is malformed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from hub.transparency.bundle import BundleResult, verify_bundle
from hub.transparency.checkpoint import NoteError, parse_vkey

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREADABLE = 2
MAX_BUNDLE_BYTES = 16 << 20
"""A bundle is a few kilobytes; anything this large is not one."""


class _Unreadable(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hub audit verify",
        description=(
            "Verify a receipt bundle (GET /v1/receipts/{id}/proof) offline: the receipt's"
            " Ed25519 signature over its RFC 8785 form, its leaf hash, the RFC 9162 inclusion"
            " proof against the signed checkpoint, and the checkpoint's signature."
        ),
    )
    parser.add_argument("bundle", help="the bundle JSON file ('-' reads standard input)")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="VKEY",
        help=(
            "a trusted verifier key (name+hash+base64), as the hub publishes it; repeat for"
            " several. Without it (and without --allow-unpinned) the bundle fails key_pinned."
        ),
    )
    parser.add_argument(
        "--origin",
        metavar="ORIGIN",
        help="the log the bundle must be of, e.g. the hub's live log (.../live)",
    )
    parser.add_argument(
        "--allow-unpinned",
        action="store_true",
        help="check the bundle against the keys it carries itself, without --key (proves only"
        " that it is consistent: anyone can sign a bundle with a key of their own)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # I-JSON (RFC 7493): a duplicate name makes the receipt mean two things.
            raise ValueError(f"duplicate object member {key!r}")
        result[key] = value
    return result


def _load(path: str, stdin: TextIO) -> object:
    try:
        if path == "-":
            data = stdin.buffer.read(MAX_BUNDLE_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise _Unreadable(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_BUNDLE_BYTES:
        raise _Unreadable(f"{path} is larger than {MAX_BUNDLE_BYTES} bytes; not a bundle")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Unreadable(f"{path} is not UTF-8 text") from exc
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_object_pairs)
    except (ValueError, RecursionError) as exc:
        raise _Unreadable(f"{path} is not JSON: {exc}") from exc


def _summary(bundle: object, result: BundleResult) -> str:
    if not result.ok:
        return "FAILED: " + ", ".join(result.failed)
    assert isinstance(bundle, dict)  # every check passed, so the shape is right
    receipt_id = bundle["receipt"].get("id", "the receipt")
    log = bundle["log"]
    text = (
        f"verified: {receipt_id} is leaf {log['leaf_index']} of {log['tree_size']}"
        f" in log {log['origin']}"
    )
    if not result.pinned:
        text += " (keys not pinned, as asked: the bundle's own keys were used)"
    return text


def main(argv: Sequence[str], *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command with ``argv`` (the arguments after ``verify``); returns the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = _parser().parse_args(list(argv))
    for entry in args.key:
        try:
            parse_vkey(entry)
        except NoteError as exc:
            print(f"hub audit verify: --key {entry!r} is not a verifier key: {exc}", file=err)
            return EXIT_UNREADABLE
    try:
        bundle = _load(args.bundle, sys.stdin)
    except _Unreadable as exc:
        print(f"hub audit verify: {exc}", file=err)
        return EXIT_UNREADABLE
    result = verify_bundle(
        bundle, trusted_keys=args.key, allow_unpinned=args.allow_unpinned, origin=args.origin
    )
    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False), file=out)
    else:
        width = max(len(check.name) for check in result.checks)
        for check in result.checks:
            mark = "ok  " if check.ok else "FAIL"
            print(f"{mark}  {check.name:<{width}}  {check.detail}", file=out)
        print(_summary(bundle, result), file=out)
    return EXIT_OK if result.ok else EXIT_FAILED
