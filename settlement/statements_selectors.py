"""Bank statements, reconciliation runs and exceptions as the caller may see them.

The operator sees every statement of its mode; a bank the statements it reported (its own, or
ones the operator imported for it). Runs and exceptions are the operator's work and only its own
to see. Anything else is 404, whoever owns it.
"""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from hub import errors
from hub.principal import Principal
from settlement.models_statements import (
    BankStatement,
    ReconciliationException,
    ReconciliationRun,
    StatementLine,
)


def bank_statements_visible(*, actor: Principal) -> QuerySet[BankStatement]:
    queryset = BankStatement.objects.filter(livemode=actor.livemode)
    if not actor.is_operator:
        queryset = queryset.filter(bank=actor.participant)
    current = ReconciliationRun.objects.filter(
        statement=OuterRef("pk"), status=ReconciliationRun.Status.CURRENT
    )
    return queryset.annotate(current_run_id=Subquery(current.values("id")[:1]))


def bank_statement_get(*, actor: Principal, statement_id: str) -> BankStatement:
    statement = bank_statements_visible(actor=actor).filter(pk=statement_id).first()
    if statement is None:
        raise errors.NotFound()
    return statement


def statement_lines(*, statement: BankStatement) -> QuerySet[StatementLine]:
    return StatementLine.objects.filter(statement=statement)


def reconciliation_run_get(*, actor: Principal, run_id: str) -> ReconciliationRun:
    run = (
        ReconciliationRun.objects.filter(livemode=actor.livemode, pk=run_id)
        .select_related("statement")
        .first()
    )
    if run is None or not actor.is_operator:
        raise errors.NotFound()
    return run


def reconciliation_exceptions_visible(*, actor: Principal) -> QuerySet[ReconciliationException]:
    queryset = ReconciliationException.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.none()


def reconciliation_exception_get(*, actor: Principal, exception_id: str) -> ReconciliationException:
    found = reconciliation_exceptions_visible(actor=actor).filter(pk=exception_id).first()
    if found is None:
        raise errors.NotFound()
    return found
