from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "hub"
    label = "hub"
    verbose_name = "Settlement hub core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hub.api import schema  # noqa: F401  (registers the OpenAPI auth extension)
