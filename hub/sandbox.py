"""The sandbox participants: one per role, with registration ids whose check characters are
computed, not made up, so that they pass the same validation as real ones."""

from __future__ import annotations

from dataclasses import dataclass

from hub.models import Participant, Role
from hub.registration import brn_check_digit, org_code_check_char, uscc_check_char


def make_uscc(region: str, org8: str) -> str:
    """A unified social credit code for a company (91...) in ``region`` (6 digits)."""
    org = org8 + org_code_check_char(org8)
    first17 = "91" + region + org
    return first17 + uscc_check_char(first17)


def make_brn(first9: str) -> str:
    return first9 + brn_check_digit(first9)


@dataclass(frozen=True)
class SandboxParticipant:
    role: str
    legal_name: str
    country: str
    registration_id: str


SANDBOX = [
    SandboxParticipant(
        Role.OPERATOR,
        "Weihai Cross-Border Settlement Hub Operator (Sandbox)",
        "CN",
        make_uscc("371000", "MA3CBX01"),
    ),
    SandboxParticipant(
        Role.MERCHANT,
        "Weihai Seaside Trading Co., Ltd. (Sandbox)",
        "CN",
        make_uscc("371002", "MA3CBX02"),
    ),
    SandboxParticipant(
        Role.PAYMENT_INSTITUTION,
        "Incheon Easy Pay Co., Ltd. (Sandbox)",
        "KR",
        make_brn("131860001"),
    ),
    SandboxParticipant(
        Role.BANK,
        "Shandong Weihai Commercial Bank (Sandbox)",
        "CN",
        make_uscc("371000", "MA3CBX03"),
    ),
    SandboxParticipant(
        Role.INSURER,
        "Yellow Sea Export Credit Insurance (Sandbox)",
        "CN",
        make_uscc("370200", "MA3CBX04"),
    ),
    SandboxParticipant(
        Role.REGULATOR,
        "Forex Administration, Weihai Branch (Sandbox)",
        "CN",
        make_uscc("371000", "MA3CBX05"),
    ),
]


def sandbox_participants() -> list[Participant]:
    """Create the sandbox participants that do not exist yet; return all of them."""
    from hub.services.participants import participant_register

    result = []
    for spec in SANDBOX:
        existing = Participant.objects.filter(
            country=spec.country, registration_id=spec.registration_id
        ).first()
        result.append(
            existing
            or participant_register(
                role=spec.role,
                legal_name=spec.legal_name,
                country=spec.country,
                registration_id=spec.registration_id,
                metadata={"sandbox": "true"},
            )
        )
    return result


def sandbox_urls(host: str = "127.0.0.1") -> dict[str, str]:
    """Where ``hub serve`` runs each sandbox institution (fixed ports, so seeded connections
    keep pointing at them across restarts)."""
    from hub.conf import hub_settings

    ports: dict[str, int] = hub_settings.SANDBOX_PORTS
    return {name: f"http://{host}:{port}" for name, port in ports.items()}


def sandbox_connections(participants: list[Participant]) -> dict[str, str]:
    """Connect the sandbox payment institution and bank to their sandbox institutions (test
    mode). Returns adapter name -> connection id; existing connections are kept as they are."""
    import json

    from adapters.sandbox.bank import DEFAULT_CLIENT_ID, DEFAULT_SIGNING_KEY
    from adapters.sandbox.stripe_like import DEFAULT_SECRET_KEY, DEFAULT_WEBHOOK_SECRET
    from hub.crypto import encrypt
    from hub.models import AdapterConnection

    urls = sandbox_urls()
    by_role = {p.role: p for p in participants}
    wanted = {
        "stripe_like": (
            by_role[Role.PAYMENT_INSTITUTION],
            {"base_url": urls["stripe_like"]},
            {"secret_key": DEFAULT_SECRET_KEY, "webhook_secret": DEFAULT_WEBHOOK_SECRET},
        ),
        "bank": (
            by_role[Role.BANK],
            {"base_url": urls["bank"], "client_id": DEFAULT_CLIENT_ID},
            {"signing_key": DEFAULT_SIGNING_KEY},
        ),
    }
    result = {}
    for adapter, (participant, config, credentials) in wanted.items():
        connection, _ = AdapterConnection.objects.get_or_create(
            participant=participant,
            adapter=adapter,
            livemode=False,
            defaults={
                "sandbox": True,
                "config": config,
                "credentials_encrypted": encrypt(json.dumps(credentials, sort_keys=True)),
            },
        )
        result[adapter] = connection.pk
    return result


def start_sandbox_institutions(hub_url: str) -> list[object]:
    """Start the sandbox institutions on their fixed ports for ``hub serve``. The payment
    institution's notifications go to the hub's inbound endpoint of the seeded connection.
    Returns the started servers (call ``stop()`` on each)."""
    from adapters.sandbox.bank import BankSandbox
    from adapters.sandbox.stripe_like import StripeLikeSandbox
    from hub.conf import hub_settings
    from hub.models import AdapterConnection

    ports: dict[str, int] = hub_settings.SANDBOX_PORTS
    urls = sandbox_urls()
    connection = (
        AdapterConnection.objects.filter(
            adapter="stripe_like", sandbox=True, config__base_url=urls["stripe_like"]
        )
        .order_by("created_at")
        .first()
    )
    webhook_url = f"{hub_url}/v1/inbound/{connection.pk}" if connection is not None else ""
    started: list[object] = []
    try:
        started.append(
            StripeLikeSandbox(port=ports["stripe_like"], webhook_url=webhook_url).start()
        )
        started.append(BankSandbox(port=ports["bank"]).start())
    except BaseException:
        for server in started:
            server.stop()  # type: ignore[attr-defined]
        raise
    return started
