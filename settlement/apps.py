from django.apps import AppConfig


class SettlementConfig(AppConfig):
    name = "settlement"
    label = "settlement"
    verbose_name = "Settlement"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from settlement import payins, payouts

        payouts.register_handlers()
        payins.register_handlers()
