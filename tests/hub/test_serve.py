"""``hub serve`` on the embedded default: the API under gunicorn, a worker and beat, all stopped
by one signal. Runs the real command in a fresh data directory."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _hub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_everything_and_stops_on_signal(tmp_path, stop_signal):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DATABASE_URL", "CELERY_"))
    }
    env["HUB_DATA_DIR"] = str(tmp_path)
    _hub(env, "migrate", "--verbosity", "0")
    keys = json.loads(_hub(env, "seed", "sandbox", "--json").stdout)
    assert set(keys) == {
        "operator",
        "merchant",
        "payment_institution",
        "bank",
        "insurer",
        "regulator",
    }
    assert all(row["key"].startswith("hk_test_") for row in keys.values())

    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        for role, row in keys.items():
            me = httpx.get(
                f"{base}/v1/me", headers={"Authorization": f"Bearer {row['key']}"}, timeout=5
            )
            assert me.status_code == 200
            assert me.json()["participant"]["role"] == role
        assert httpx.get(f"{base}/v1/openapi.json", timeout=10).json()["openapi"].startswith("3.")
        docs = httpx.get(f"{base}/v1/docs", timeout=5)
        assert docs.status_code == 200
        assert "swagger-ui" in docs.text
        children = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", log.read_text())]
        assert len(children) == 3, log.read_text()
        assert all(_alive(pid) for pid in children)
    finally:
        proc.send_signal(stop_signal)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "hub stopped" in log.read_text()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)
