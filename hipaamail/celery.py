"""The Celery application. Messages only wake workers; the truth is in the database (DESIGN.md)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hipaamail.settings.local")

app = Celery("hipaamail")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Beat jobs live in each app's periodic.py, which no code imports (import-linter); the worker and beat load them here.
app.autodiscover_tasks(related_name="periodic")
