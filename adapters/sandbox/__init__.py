"""Sandbox institutions: small real HTTP servers on loopback that behave like the institutions the
built-in adapters talk to, with deterministic fault injection (see ``base``).

    from adapters.sandbox import start_sandboxes
    servers = start_sandboxes()            # {"stripe_like": ..., "bank": ...}, free ports
    servers["bank"].base_url               # what the bank adapter's ``base_url`` points at
    stop_sandboxes(servers)
"""

from __future__ import annotations

from adapters.sandbox.bank import BankSandbox
from adapters.sandbox.base import Fault, FaultError, FaultQueue, SandboxServer, parse_fault
from adapters.sandbox.stripe_like import StripeLikeSandbox

# Adapter name -> its sandbox institution (the ECB rate source reads offline data: no sandbox).
SANDBOXES: dict[str, type[SandboxServer]] = {
    "stripe_like": StripeLikeSandbox,
    "bank": BankSandbox,
}


def start_sandboxes(
    *, host: str = "127.0.0.1", ports: dict[str, int] | None = None
) -> dict[str, SandboxServer]:
    """Start every sandbox institution (port 0, the default, picks a free port)."""
    started: dict[str, SandboxServer] = {}
    try:
        for name, cls in SANDBOXES.items():
            started[name] = cls(host=host, port=(ports or {}).get(name, 0)).start()
    except BaseException:
        stop_sandboxes(started)
        raise
    return started


def stop_sandboxes(servers: dict[str, SandboxServer]) -> None:
    for server in servers.values():
        server.stop()


__all__ = [
    "SANDBOXES",
    "BankSandbox",
    "Fault",
    "FaultError",
    "FaultQueue",
    "SandboxServer",
    "StripeLikeSandbox",
    "parse_fault",
    "start_sandboxes",
    "stop_sandboxes",
]
