from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Staff accounts: roles, the deny-by-default access markers, the second factor and the step-up, allauth's
    adapter, their pages. Below the domain apps (campaigns -> consent -> accounts -> audit)."""

    name = "accounts"
    verbose_name = "Staff accounts"

    def ready(self) -> None:
        from django.apps import apps
        from django.conf import settings
        from django.db.models.signals import post_migrate

        from accounts import signals  # noqa: F401  (audit of sign-in events)
        from accounts.throttle import throttle_settings_check

        # A mistyped THROTTLE_* stops every entry point at start, naming the variable, rather than throttle nothing.
        throttle_settings_check(settings.HIPAAMAIL_THROTTLES)

        # After every migrate and every test flush, as Django does for permissions. Sent by the auth app (whose
        # tables hold the groups): Django sends post_migrate only for apps with a models module, which this app
        # has not, so connected to itself the roles were never made on a fresh installation.
        post_migrate.connect(_create_roles, sender=apps.get_app_config("auth"), dispatch_uid="accounts.roles")


def _create_roles(sender, using="default", **kwargs) -> None:
    from django.contrib.auth.models import Group

    from accounts.roles import ALL

    for name in ALL:
        Group.objects.using(using).get_or_create(name=name)
