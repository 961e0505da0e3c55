"""URLs of one part of the settlement app, added to the project's list by hub/urls.py."""

from django.urls import URLPattern, path, re_path

from settlement import statements_api as api

STATEMENT = r"(?P<bank_statement_id>bst_[0-9a-z]{26})"
RUN = r"(?P<run_id>rcr_[0-9a-z]{26})"
EXCEPTION = r"(?P<exception_id>rex_[0-9a-z]{26})"

urlpatterns: list[URLPattern] = [
    path("v1/bank_statements", api.BankStatementListView.as_view(), name="bank_statements"),
    re_path(
        rf"^v1/bank_statements/{STATEMENT}$",
        api.BankStatementDetailView.as_view(),
        name="bank_statement",
    ),
    re_path(
        rf"^v1/bank_statements/{STATEMENT}/lines$",
        api.BankStatementLinesView.as_view(),
        name="bank_statement_lines",
    ),
    re_path(
        rf"^v1/bank_statements/{STATEMENT}/reconcile$",
        api.BankStatementReconcileView.as_view(),
        name="bank_statement_reconcile",
    ),
    re_path(
        rf"^v1/reconciliation_runs/{RUN}$",
        api.ReconciliationRunDetailView.as_view(),
        name="reconciliation_run",
    ),
    path(
        "v1/reconciliation_exceptions",
        api.ReconciliationExceptionListView.as_view(),
        name="reconciliation_exceptions",
    ),
    re_path(
        rf"^v1/reconciliation_exceptions/{EXCEPTION}/resolve$",
        api.ReconciliationExceptionResolveView.as_view(),
        name="reconciliation_exception_resolve",
    ),
]
