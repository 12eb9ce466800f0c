from django.apps import AppConfig


class HipaamailConfig(AppConfig):
    """The project package as an app: authentication glue, roles, staff pages shared by every app."""

    name = "hipaamail"
    verbose_name = "hipaamail"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from hipaamail import signals  # noqa: F401  (audit of sign-in events)

        # After every migrate and every test flush, as Django does for permissions.
        post_migrate.connect(_create_roles, sender=self)


def _create_roles(sender, using="default", **kwargs) -> None:
    from django.contrib.auth.models import Group

    from hipaamail.roles import ALL

    for name in ALL:
        Group.objects.using(using).get_or_create(name=name)
