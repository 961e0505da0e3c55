"""Who is calling: the authenticated participant, the key it used and the key's mode.

Services take it as ``actor`` so that every write knows who made it and under which request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.models import ApiKey, Participant, Role


@dataclass(frozen=True)
class Principal:
    participant: Participant
    api_key: ApiKey | None
    livemode: bool
    scopes: frozenset[str]
    request_id: str = ""
    ip_address: str | None = field(default=None, compare=False)

    @property
    def role(self) -> str:
        return self.participant.role

    @property
    def is_operator(self) -> bool:
        return self.participant.role == Role.OPERATOR

    # DRF treats request.user as a user object.
    @property
    def is_authenticated(self) -> bool:
        return True


# Scopes each role's keys may carry. A key carries its role's full set unless it was issued with
# a narrower list. Endpoints name the one scope they need.
READ_SCOPES = frozenset(
    {
        "participants:read",
        "api_keys:read",
        "events:read",
        "webhooks:read",
        "audit:read",
        "adapters:read",
    }
)
ROLE_SCOPES: dict[str, frozenset[str]] = {
    role: READ_SCOPES | {"api_keys:write", "webhooks:write"} for role in Role.values
}
ROLE_SCOPES[Role.OPERATOR] = ROLE_SCOPES[Role.OPERATOR] | {
    "participants:write",
    "adapters:write",
    "operator_tasks:read",
    "operator_tasks:write",
}
# The ledger: every role but the regulator reads its own accounts and their transfers; merchants
# open their settlement accounts; only the operator moves money by hand.
for _role in set(Role.values) - {Role.REGULATOR}:
    ROLE_SCOPES[_role] = ROLE_SCOPES[_role] | {"accounts:read", "transfers:read"}
for _role in (Role.MERCHANT, Role.OPERATOR):
    ROLE_SCOPES[_role] = ROLE_SCOPES[_role] | {"accounts:write"}
ROLE_SCOPES[Role.OPERATOR] = ROLE_SCOPES[Role.OPERATOR] | {"transfers:write"}
# Payouts: a merchant registers its bank accounts and withdraws; the operator watches.
ROLE_SCOPES[Role.MERCHANT] = ROLE_SCOPES[Role.MERCHANT] | {"payouts:read", "payouts:write"}
# The operator's keys carry every scope, so that it can rotate any participant's key (endpoint
# rules still keep payouts to merchants).
ROLE_SCOPES[Role.OPERATOR] = ROLE_SCOPES[Role.OPERATOR] | {"payouts:read", "payouts:write"}
# Bank statements: a bank uploads and reads the statements of its accounts, the operator those of
# every account; only the operator reconciles them and works the exceptions queue.
for _role in (Role.BANK, Role.OPERATOR):
    ROLE_SCOPES[_role] = ROLE_SCOPES[_role] | {"bank_statements:read", "bank_statements:write"}
ROLE_SCOPES[Role.OPERATOR] = ROLE_SCOPES[Role.OPERATOR] | {
    "reconciliation:read",
    "reconciliation:write",
}
# Payins: a merchant takes payments and refunds them; the payment institution sees the payins it
# collects and its settlement runs; the operator sets fees and runs settlements.
ROLE_SCOPES[Role.MERCHANT] = ROLE_SCOPES[Role.MERCHANT] | {"payins:read", "payins:write"}
ROLE_SCOPES[Role.PAYMENT_INSTITUTION] = ROLE_SCOPES[Role.PAYMENT_INSTITUTION] | {
    "payins:read",
    "settlement_runs:read",
}
ROLE_SCOPES[Role.OPERATOR] = ROLE_SCOPES[Role.OPERATOR] | {
    "payins:read",
    "payins:write",
    "settlement_runs:read",
    "settlement_runs:write",
}
# FX: everyone with a key reads reference rates; a merchant quotes and converts; the operator
# sets margin tiers and reads the daily report.
for _role in Role.values:
    ROLE_SCOPES[_role] = ROLE_SCOPES[_role] | {"fx:read"}
for _role in (Role.MERCHANT, Role.OPERATOR):
    ROLE_SCOPES[_role] = ROLE_SCOPES[_role] | {"fx:write"}
# Trade documents and their verification: a merchant files its documents and asks for its
# movements to be verified; a bank officer works the review queue; the operator keeps the list
# of denied parties and sees everything.
ROLE_SCOPES[Role.MERCHANT] = ROLE_SCOPES[Role.MERCHANT] | {
    "trade:read",
    "trade:write",
    "verifications:read",
    "verifications:write",
}
ROLE_SCOPES[Role.BANK] = ROLE_SCOPES[Role.BANK] | {"verifications:read", "verifications:review"}
ROLE_SCOPES[Role.OPERATOR] = ROLE_SCOPES[Role.OPERATOR] | {
    "trade:read",
    "trade:write",
    "verifications:read",
    "verifications:write",
    "verifications:review",
    "transparency:write",
}
# A regulator never writes data; it may still look after its own keys. It reads the receipts,
# their proofs, the log's checkpoints and the statistics.
ROLE_SCOPES[Role.REGULATOR] = READ_SCOPES | {
    "api_keys:write",
    "fx:read",
    "receipts:read",
    "transparency:read",
}
