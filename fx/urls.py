from django.urls import path, re_path

from fx import api

QUOTE = r"(?P<quote_id>quo_[0-9a-z]{26})"
CONVERSION = r"(?P<conversion_id>conv_[0-9a-z]{26})"

urlpatterns = [
    path("v1/fx/rates", api.RateView.as_view(), name="fx_rates"),
    path("v1/fx/rates/history", api.RateHistoryView.as_view(), name="fx_rates_history"),
    path("v1/fx/quotes", api.QuoteListView.as_view(), name="fx_quotes"),
    re_path(rf"^v1/fx/quotes/{QUOTE}$", api.QuoteDetailView.as_view(), name="fx_quote"),
    path("v1/fx/conversions", api.ConversionListView.as_view(), name="fx_conversions"),
    re_path(
        rf"^v1/fx/conversions/{CONVERSION}$",
        api.ConversionDetailView.as_view(),
        name="fx_conversion",
    ),
    path("v1/fx/tiers", api.TierView.as_view(), name="fx_tiers"),
    path(
        "v1/fx/auto_conversions", api.AutoConversionListView.as_view(), name="fx_auto_conversions"
    ),
    path("v1/fx/reports/daily", api.DailyReportView.as_view(), name="fx_report_daily"),
]
