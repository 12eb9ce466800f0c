from django.apps import AppConfig


class HipaamailConfig(AppConfig):
    """The project package as an app: authentication glue, roles, staff pages shared by every app."""

    name = "hipaamail"
    verbose_name = "hipaamail"

    def ready(self) -> None:
        from hipaamail import signals  # noqa: F401  (audit of sign-in events)
