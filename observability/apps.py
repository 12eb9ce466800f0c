import os

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Observability"

    def ready(self):
        from observability import signals  # noqa: F401 - connects Celery's task and worker signals
        from observability.metrics import MULTIPROCESS_DIR_VARIABLE, multiprocess_dir

        folder = multiprocess_dir()
        if folder and not os.path.isdir(folder):
            # prometheus_client would fail at the first sample with a bare FileNotFoundError.
            raise ImproperlyConfigured(
                f"{MULTIPROCESS_DIR_VARIABLE} is {folder!r}, which is not a folder: create it (empty, writable, one "
                "per host, emptied before the processes start) or unset it for one-process metrics."
            )
