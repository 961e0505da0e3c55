"""Run the conformance suite on some installed adapters, in a pytest subprocess of its own (its
exit status is the verdict: 0 when every check passed)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

SUITE = Path(__file__).with_name("suite.py")


def pytest_command(
    names: Sequence[str], *, verbose: bool = True, keyword: str | None = None
) -> list[str]:
    """The pytest command line: the kit's suite and plugin, none of the project's own test
    configuration (``-c`` an empty file), no cache written next to the installed kit. Run it with
    ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`` (``run_conformance`` does)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(SUITE),
        "-c",
        os.devnull,
        "--rootdir",
        str(SUITE.parent),
        "-p",
        "adapters.conformance.plugin",
        "-p",
        "no:cacheprovider",
        "--no-header",
        "-rfEs",
        "--tb=short",
        "-v" if verbose else "-q",
    ]
    if keyword:
        command += ["-k", keyword]
    for name in names:
        command += ["--adapter", name]
    return command


def run_conformance(
    names: Sequence[str],
    *,
    write: Callable[[str], object] = sys.stdout.write,
    verbose: bool = True,
    keyword: str | None = None,
) -> int:
    """Run the suite on ``names``, streaming pytest's report to ``write``; pytest's exit code."""
    # Only the kit's plugin: none of the project's (pytest-django would set up the hub).
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    with subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
        pytest_command(names, verbose=verbose, keyword=keyword),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            write(line)
        return process.wait()
