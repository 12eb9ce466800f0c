"""The Celery application. Messages only wake workers; the truth is in the database (DESIGN.md).

Production settings unless DJANGO_SETTINGS_MODULE says otherwise (hipaamail/startup.py, ADR 0017)."""
from celery import Celery

from hipaamail.startup import settings_load, settings_module_default

settings_module_default()

app = Celery("hipaamail")


# This module is imported while Django imports the settings (hipaamail/__init__.py), so the settings cannot be
# evaluated here. Celery configures the app on first use (a worker's or beat's start): evaluate them then, so that a
# missing secret is a clear message rather than a traceback from inside Celery's option parsing.
@app.on_configure.connect
def _settings_load(sender=None, **kwargs) -> None:
    settings_load()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Beat jobs live in each app's periodic.py, which no code imports (import-linter); the worker and beat load them here.
app.autodiscover_tasks(related_name="periodic")
