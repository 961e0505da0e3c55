"""URLs of one part of the settlement app, added to the project's list by hub/urls.py."""

from django.urls import URLPattern, re_path

from settlement import account_statements_api
from settlement.urls import ACCOUNT

urlpatterns: list[URLPattern] = [
    re_path(
        rf"^v1/accounts/{ACCOUNT}/statement$",
        account_statements_api.AccountStatementView.as_view(),
        name="account_statement",
    ),
]
