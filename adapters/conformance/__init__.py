"""The conformance kit: the checks every adapter passes against its sandbox institution before an
operator may enable it (``hub adapters conformance NAME``; docs/adapters.md).

- ``hook``: what an adapter class provides (``conformance_sandbox()`` returning a
  ``SandboxHandle``) and the driver protocols per capability;
- ``control``: helpers for drivers (the sandbox control API client, a webhook inbox);
- ``suite`` and ``plugin``: the pytest checks, parametrised by adapter name;
- ``runner``: runs the suite in a subprocess;
- ``builtin``: the hooks of the adapters that ship with the hub.
"""

from __future__ import annotations

from adapters.conformance.hook import (
    CREATE_FAULTS,
    HOOK,
    BankDriver,
    FaultDriver,
    Notification,
    PaymentDriver,
    RateSourceDriver,
    SandboxHandle,
)

__all__ = [
    "CREATE_FAULTS",
    "HOOK",
    "BankDriver",
    "FaultDriver",
    "Notification",
    "PaymentDriver",
    "RateSourceDriver",
    "SandboxHandle",
]
