from django.urls import path, re_path

from settlement import api, payins_api, payouts_api, runs_api

ACCOUNT = r"(?P<account_id>acct_[0-9a-z]{26})"
# Transfer ids are the caller's: what check_transfer_id accepts.
TRANSFER = r"(?P<transfer_id>[A-Za-z0-9_-]{1,64})"
PAYOUT = r"(?P<payout_id>po_[0-9a-z]{26})"
BANK_ACCOUNT = r"(?P<bank_account_id>pba_[0-9a-z]{26})"
PAYIN = r"(?P<payin_id>pay_[0-9a-z]{26})"
REFUND = r"(?P<refund_id>rf_[0-9a-z]{26})"
RUN = r"(?P<run_id>srun_[0-9a-z]{26})"

urlpatterns = [
    path("v1/accounts", api.AccountListView.as_view(), name="accounts"),
    re_path(rf"^v1/accounts/{ACCOUNT}$", api.AccountDetailView.as_view(), name="account"),
    re_path(
        rf"^v1/accounts/{ACCOUNT}/balance$",
        api.AccountBalanceView.as_view(),
        name="account_balance",
    ),
    path("v1/transfers", api.TransferListView.as_view(), name="transfers"),
    path("v1/transfers/batch", api.TransferBatchView.as_view(), name="transfers_batch"),
    re_path(rf"^v1/transfers/{TRANSFER}$", api.TransferDetailView.as_view(), name="transfer"),
    re_path(
        rf"^v1/transfers/{TRANSFER}/post$", api.TransferPostView.as_view(), name="transfer_post"
    ),
    re_path(
        rf"^v1/transfers/{TRANSFER}/void$", api.TransferVoidView.as_view(), name="transfer_void"
    ),
    path(
        "v1/payout_bank_accounts",
        payouts_api.BankAccountListView.as_view(),
        name="payout_bank_accounts",
    ),
    re_path(
        rf"^v1/payout_bank_accounts/{BANK_ACCOUNT}$",
        payouts_api.BankAccountDetailView.as_view(),
        name="payout_bank_account",
    ),
    path("v1/payouts", payouts_api.PayoutListView.as_view(), name="payouts"),
    re_path(rf"^v1/payouts/{PAYOUT}$", payouts_api.PayoutDetailView.as_view(), name="payout"),
    path("v1/payins", payins_api.PayinListView.as_view(), name="payins"),
    re_path(rf"^v1/payins/{PAYIN}$", payins_api.PayinDetailView.as_view(), name="payin"),
    path("v1/refunds", payins_api.RefundListView.as_view(), name="refunds"),
    re_path(rf"^v1/refunds/{REFUND}$", payins_api.RefundDetailView.as_view(), name="refund"),
    path("v1/fee_rules", runs_api.FeeRuleListView.as_view(), name="fee_rules"),
    path("v1/settlement_runs", runs_api.RunListView.as_view(), name="settlement_runs"),
    re_path(
        rf"^v1/settlement_runs/{RUN}$", runs_api.RunDetailView.as_view(), name="settlement_run"
    ),
    re_path(
        rf"^v1/settlement_runs/{RUN}/report$",
        runs_api.RunReportView.as_view(),
        name="settlement_run_report",
    ),
]
