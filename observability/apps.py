from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Observability"

    def ready(self):
        from observability import metrics, signals  # noqa: F401 - the folder check; Celery's task and worker signals
