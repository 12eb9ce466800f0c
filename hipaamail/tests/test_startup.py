"""The entry points never fall back to the demo's keys or DEBUG (hipaamail/startup.py, ADR 0017): with
DJANGO_SETTINGS_MODULE unset they load the production settings, which refuse to start without their secrets, and
say so in a few lines (status 3), not in a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Every variable the production settings read a secret or an address from, removed: a machine where nothing is set.
PRODUCTION_VARIABLES = {
    "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "ALLOWED_HOSTS", "SITE_URL", "DATABASE_URL", "CELERY_BROKER_URL",
    "CACHE_URL", "FIELD_ENCRYPTION_KEYS", "IDENTIFIER_HASH_KEY", "AUDIT_CHECKPOINT_KEYS", "DEFAULT_FROM_EMAIL",
    "EMAIL_HOST",
}  # fmt: skip
CLEAR_ERROR = "hipaamail: the settings (hipaamail.settings.production) refuse to start."


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in PRODUCTION_VARIABLES}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


ENTRY_POINTS = {
    "manage.py": [sys.executable, "manage.py", "check"],
    "wsgi": [sys.executable, "-c", "import hipaamail.wsgi"],
    "asgi": [sys.executable, "-c", "import hipaamail.asgi"],
    "celery worker": [str(BIN / "celery"), "-A", "hipaamail", "worker", "-Q", "campaigns"],
    "celery beat": [str(BIN / "celery"), "-A", "hipaamail", "beat"],
}


@pytest.mark.parametrize("command", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_an_entry_point_without_settings_module_or_secrets_refuses_with_the_production_settings_clear_error(command):
    result = _run(command)

    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(CLEAR_ERROR), result.stderr
    assert "Set SECRET_KEY, ALLOWED_HOSTS, SITE_URL, DATABASE_URL" in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr  # how to make the secret
    assert ".env.example" in result.stderr
    assert "Traceback" not in result.stderr
    assert "demo-only" not in result.stdout + result.stderr


def test_gunicorn_without_settings_stops_with_the_clear_error_instead_of_respawning_workers():
    result = _run([str(BIN / "gunicorn"), "hipaamail.wsgi:application", "--bind", "127.0.0.1:0", "--workers", "1"])

    assert result.returncode == 3
    assert CLEAR_ERROR in result.stderr
    assert "Worker failed to boot" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_demo_and_the_test_suite_name_their_settings_module_themselves():
    """make run and make test keep working as before: they never rely on the default."""
    assert "export DJANGO_SETTINGS_MODULE=hipaamail.settings.local\n" in (ROOT / "scripts" / "run-demo").read_text()
    assert "export DJANGO_SETTINGS_MODULE=hipaamail.settings.test\n" in (ROOT / "scripts" / "test").read_text()
    assert 'DJANGO_SETTINGS_MODULE = "hipaamail.settings.test"' in (ROOT / "pyproject.toml").read_text()
