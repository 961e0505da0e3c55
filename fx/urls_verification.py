"""URLs of one part of the FX app, added to the project's list by hub/urls.py."""

from django.urls import URLPattern, path, re_path

from fx import verification_api as api

VERIFICATION = r"(?P<verification_id>ver_[0-9a-z]{26})"
BATCH = r"(?P<batch_id>vbt_[0-9a-z]{26})"

urlpatterns: list[URLPattern] = [
    path("v1/fx/verifications", api.VerificationListView.as_view(), name="fx_verifications"),
    re_path(
        rf"^v1/fx/verifications/{VERIFICATION}$",
        api.VerificationDetailView.as_view(),
        name="fx_verification",
    ),
    re_path(
        rf"^v1/fx/verifications/{VERIFICATION}/approve$",
        api.VerificationApproveView.as_view(),
        name="fx_verification_approve",
    ),
    re_path(
        rf"^v1/fx/verifications/{VERIFICATION}/reject$",
        api.VerificationRejectView.as_view(),
        name="fx_verification_reject",
    ),
    path(
        "v1/fx/verification_batches",
        api.BatchListView.as_view(),
        name="fx_verification_batches",
    ),
    re_path(
        rf"^v1/fx/verification_batches/{BATCH}$",
        api.BatchDetailView.as_view(),
        name="fx_verification_batch",
    ),
    path("v1/fx/denied_parties", api.DeniedPartyListView.as_view(), name="fx_denied_parties"),
]
