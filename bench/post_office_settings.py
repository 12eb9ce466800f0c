"""Minimal settings for django-post-office in bench/health_system.py's comparison (issue 15, item 5): only
post_office installed, on a database of its own (POST_OFFICE_DATABASE_URL), mail to the benchmark's smtp-sink
(POST_OFFICE_EMAIL_PORT) through Django's SMTP backend. The product's settings never name post_office."""
import os
from urllib.parse import urlparse

_db = urlparse(os.environ["POST_OFFICE_DATABASE_URL"])

SECRET_KEY = "bench-only-post-office"
USE_TZ = True
INSTALLED_APPS = ["post_office"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username or "postgres",
        "HOST": _db.hostname or "127.0.0.1",
        "PORT": _db.port or 5432,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
EMAIL_BACKEND = "post_office.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("POST_OFFICE_EMAIL_PORT", "25"))
# The best settings found on these machines (/work/shared/NOTES.md): 3 processes, batches of 6000, 1 thread each.
POST_OFFICE = {
    "BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"},
    "BATCH_SIZE": int(os.environ.get("POST_OFFICE_BATCH_SIZE", "6000")),
    "THREADS_PER_PROCESS": 1,
    "LOG_LEVEL": 1,  # failures only: a log row per sent message is not part of the comparison
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "ERROR"}}
# post_office renders subjects and bodies through Django's template engine even without a template.
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
