from django.apps import AppConfig


class HipaamailConfig(AppConfig):
    """The project package, the top of the house: settings, root URLs, the Celery app, middleware, and the demo's
    commands. Staff accounts live in the accounts app."""

    name = "hipaamail"
    verbose_name = "hipaamail"

    def ready(self):
        from hipaamail import checks  # noqa: F401 - registers the settings checks
