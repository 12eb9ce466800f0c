from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Integration API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Outgoing webhooks follow the audit trail: an event the domain records becomes a delivery in the same
        # transaction (api.webhooks). The domain never imports the API.
        from api import webhooks

        webhooks.connect()
