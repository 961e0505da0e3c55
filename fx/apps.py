from django.apps import AppConfig


class FxConfig(AppConfig):
    name = "fx"
    label = "fx"
    verbose_name = "FX"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from fx import auto, receipts, verification  # noqa: F401  (registers event types)

        auto.register_handlers()
        receipts.register_handlers()
