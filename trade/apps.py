from django.apps import AppConfig


class TradeConfig(AppConfig):
    name = "trade"
    label = "trade"
    verbose_name = "Trade documents"
    default_auto_field = "django.db.models.BigAutoField"
