"""The regulator's audit API: receipts, their proofs, statistics and the log's checkpoints."""

from django.urls import URLPattern, path, re_path

from fx import audit_api

RECEIPT = r"(?P<receipt_id>rcpt_[0-9a-z]{26})"

urlpatterns: list[URLPattern] = [
    path("v1/receipts", audit_api.ReceiptListView.as_view(), name="receipts"),
    path("v1/receipts/export", audit_api.ReceiptExportView.as_view(), name="receipts_export"),
    re_path(rf"^v1/receipts/{RECEIPT}$", audit_api.ReceiptDetailView.as_view(), name="receipt"),
    re_path(
        rf"^v1/receipts/{RECEIPT}/proof$",
        audit_api.ReceiptProofView.as_view(),
        name="receipt_proof",
    ),
    path("v1/audit/statistics", audit_api.StatisticsView.as_view(), name="audit_statistics"),
    path("v1/audit/checkpoints", audit_api.CheckpointListView.as_view(), name="audit_checkpoints"),
    path(
        "v1/audit/checkpoints/latest",
        audit_api.CheckpointLatestView.as_view(),
        name="audit_checkpoint_latest",
    ),
    path("v1/audit/consistency", audit_api.ConsistencyView.as_view(), name="audit_consistency"),
    path("v1/audit/keys", audit_api.KeyListView.as_view(), name="audit_keys"),
]
