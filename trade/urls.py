"""Trade document URLs, added to the project's list by hub/urls.py."""

from django.urls import URLPattern, path, re_path

from hub.api.base import HubAPIView
from trade import api

UPLOAD = r"(?P<upload_id>upl_[0-9a-z]{26})"


def _document(
    plural: str, prefix: str, listing: type[HubAPIView], detail: type[HubAPIView]
) -> list[URLPattern]:
    singular = plural.removesuffix("s")
    return [
        path(f"v1/trade/{plural}", listing.as_view(), name=f"trade_{plural}"),
        re_path(
            rf"^v1/trade/{plural}/(?P<document_id>{prefix}_[0-9a-z]{{26}})$",
            detail.as_view(),
            name=f"trade_{singular}",
        ),
    ]


urlpatterns: list[URLPattern] = [
    *_document("orders", "ord", api.OrderListView, api.OrderDetailView),
    *_document("payment_records", "pmr", api.PaymentRecordListView, api.PaymentRecordDetailView),
    *_document("waybills", "wb", api.WaybillListView, api.WaybillDetailView),
    *_document(
        "customs_declarations",
        "cus",
        api.CustomsDeclarationListView,
        api.CustomsDeclarationDetailView,
    ),
    *_document("contracts", "ctr", api.ContractListView, api.ContractDetailView),
    *_document("invoices", "inv", api.InvoiceListView, api.InvoiceDetailView),
    path("v1/trade/uploads", api.UploadListView.as_view(), name="trade_uploads"),
    re_path(rf"^v1/trade/uploads/{UPLOAD}$", api.UploadDetailView.as_view(), name="trade_upload"),
]
