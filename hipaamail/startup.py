"""How the entry points load the settings: `manage.py`, `hipaamail/wsgi.py`, `hipaamail/asgi.py` and the Celery app.

Production is the default (ADR 0017). An operator who forgets DJANGO_SETTINGS_MODULE gets the production settings,
which refuse to start without their secrets, never DEBUG with the demo's public keys. The demo (`make run`), the
test suite (`make test`) and the benchmarks name their settings module themselves.

A configuration error is said in a few lines on stderr, with where to look, instead of a traceback through
django-environ: the process exits with status 3, which gunicorn's arbiter reads as "worker failed to boot" and
stops on, rather than respawning a worker that can only fail again.
"""
import os
import sys

from django.core.exceptions import ImproperlyConfigured

DEFAULT_SETTINGS_MODULE = "hipaamail.settings.production"
CONFIGURATION_ERROR_STATUS = 3


def settings_module_default() -> str:
    """Set DJANGO_SETTINGS_MODULE to production unless it is set; returns the module in force."""
    return os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS_MODULE)


def configuration_error_exit(error: ImproperlyConfigured, *, module: str) -> None:
    """Say what is wrong and where to look, then exit with CONFIGURATION_ERROR_STATUS."""
    sys.stderr.write(
        f"hipaamail: the settings ({module}) refuse to start.\n"
        f"  ImproperlyConfigured: {error}\n"
        "  Every variable the production settings need is in .env.example, with how to make each secret; "
        "docs/deployment.md walks through them.\n"
        "  For the demo instead, run `make run` (it uses DJANGO_SETTINGS_MODULE=hipaamail.settings.local).\n"
    )
    raise SystemExit(CONFIGURATION_ERROR_STATUS)


def settings_load() -> None:
    """Load the settings now (production unless DJANGO_SETTINGS_MODULE says otherwise), exiting with a clear
    message when they refuse the environment."""
    module = settings_module_default()
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 - evaluating the settings module is the point
    except ImproperlyConfigured as error:
        configuration_error_exit(error, module=module)
