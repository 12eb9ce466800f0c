"""Production settings fail fast on a missing secret and pass `check --deploy` (R-SEC-TLS, R-SEC-INTEGRITY)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "hipaamail.settings.production",
    "SECRET_KEY": "x" * 30 + "-a-long-random-production-secret-for-the-check",
    "ALLOWED_HOSTS": "mail.riverside-health.example",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/hipaamail",
    "FIELD_ENCRYPTION_KEYS": "prod1:cHJvZHVjdGlvbi1rZXktZm9yLXRoZS1jaGVjay0zMiE",
    "IDENTIFIER_HASH_KEY": "a-production-identifier-hash-key",
    "AUDIT_CHECKPOINT_KEYS": "a-production-audit-checkpoint-signing-key-0123456789",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k != "EMAIL_USE_TLS"}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=120
    )


def test_r_sec_tls_production_check_deploy_is_clean():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "missing",
    [
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "CELERY_BROKER_URL",
        "DATABASE_URL",
        "FIELD_ENCRYPTION_KEYS",
        "IDENTIFIER_HASH_KEY",
        "AUDIT_CHECKPOINT_KEYS",
    ],
)
def test_production_refuses_to_start_without_a_required_setting(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}

    result = _manage("check", env=env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert missing in result.stderr


def test_r_sec_tls_production_refuses_plaintext_mail():
    result = _manage("check", env=PRODUCTION_ENV | {"EMAIL_USE_TLS": "false"})

    assert result.returncode != 0
    assert "TLS" in result.stderr


def test_r_sec_integrity_production_refuses_to_start_without_a_dedicated_audit_checkpoint_key():
    """No falling back to a key derived from SECRET_KEY in production: the message names the variable and says how
    to make a key."""
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "AUDIT_CHECKPOINT_KEYS"}

    result = _manage("check", env=env)

    assert result.returncode != 0
    assert "ImproperlyConfigured: Set AUDIT_CHECKPOINT_KEYS" in result.stderr
    assert "secrets.token_urlsafe(48)" in result.stderr


@pytest.mark.parametrize(
    "keys",
    ["short-key", "a-production-audit-checkpoint-signing-key-0123456789,short-key", " , "],
    ids=["short", "one-of-two-short", "only-separators"],
)
def test_r_sec_integrity_production_refuses_an_audit_checkpoint_key_shorter_than_32(keys):
    result = _manage("check", env=PRODUCTION_ENV | {"AUDIT_CHECKPOINT_KEYS": keys})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "AUDIT_CHECKPOINT_KEYS" in result.stderr
    assert "short-key" not in result.stderr  # a key is never echoed


def test_r_sec_integrity_production_reads_the_audit_checkpoint_keys_and_file_from_the_environment():
    keys = "b" * 32 + "-the-new-key," + "a" * 40
    env = PRODUCTION_ENV | {"AUDIT_CHECKPOINT_KEYS": keys, "AUDIT_CHECKPOINT_FILE": "/srv/worm/checkpoints.jsonl"}
    code = (
        "from django.conf import settings; "
        "print(settings.AUDIT_CHECKPOINT_KEYS == ['b' * 32 + '-the-new-key', 'a' * 40]); "
        "print(settings.AUDIT_CHECKPOINT_FILE)"
    )

    result = _manage("shell", "--verbosity", "0", "-c", code, env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "/srv/worm/checkpoints.jsonl"]


def test_production_signs_django_mail_with_dkim_over_the_smtp_backend():
    """Account and alert mail goes through the DKIM backend (campaigns.mail_backend), Django's SMTP backend with TLS
    under it unless DKIM_WRAPPED_EMAIL_BACKEND names another."""
    code = (
        "from django.conf import settings; from django.core.mail import get_connection; "
        "wrapped = get_connection().wrapped; "
        "print(settings.EMAIL_BACKEND, type(wrapped).__module__, getattr(wrapped, 'use_tls', None))"
    )
    console = {"DKIM_WRAPPED_EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}

    result = _manage("shell", "--verbosity", "0", "-c", code, env=PRODUCTION_ENV)
    overridden = _manage("shell", "--verbosity", "0", "-c", code, env=PRODUCTION_ENV | console)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["campaigns.mail_backend.DkimEmailBackend", "django.core.mail.backends.smtp", "True"]
    assert overridden.returncode == 0, overridden.stderr
    assert overridden.stdout.split() == [
        "campaigns.mail_backend.DkimEmailBackend",
        "django.core.mail.backends.console",
        "None",
    ]
