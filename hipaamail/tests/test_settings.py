"""Production settings fail fast on a missing secret and pass `check --deploy` (R-SEC-TLS, R-SEC-INTEGRITY), and refuse
mail settings that would make outgoing mail wrong (R-RFC8058, R-CANSPAM-HEADERS)."""
import os
import re
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
    "SITE_URL": "https://mail.riverside-health.example",
    "DEFAULT_FROM_EMAIL": "Riverside Health <news@riverside-health.org>",
    "CACHE_URL": "redis://127.0.0.1:6379/1",
    "EMAIL_HOST": "smtp.riverside-health.org",
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
        "SITE_URL",
        "DEFAULT_FROM_EMAIL",
        "CACHE_URL",
        "EMAIL_HOST",
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
    """Account and alert mail goes through the DKIM backend (campaigns.sending.backend), Django's SMTP backend with TLS
    (trusting EMAIL_CA_FILE too: campaigns.sending.backend.SmtpEmailBackend) under it unless DKIM_WRAPPED_EMAIL_BACKEND
    names another."""
    code = (
        "from django.conf import settings; from django.core.mail import get_connection; "
        "wrapped = get_connection().wrapped; "
        "print(settings.EMAIL_BACKEND, type(wrapped).__module__, getattr(wrapped, 'use_tls', None))"
    )
    console = {"DKIM_WRAPPED_EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}

    result = _manage("shell", "--verbosity", "0", "-c", code, env=PRODUCTION_ENV)
    overridden = _manage("shell", "--verbosity", "0", "-c", code, env=PRODUCTION_ENV | console)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["campaigns.sending.backend.DkimEmailBackend", "campaigns.sending.backend", "True"]
    assert overridden.returncode == 0, overridden.stderr
    assert overridden.stdout.split() == [
        "campaigns.sending.backend.DkimEmailBackend",
        "django.core.mail.backends.console",
        "None",
    ]


@pytest.mark.parametrize(
    "site_url",
    ["http://mail.riverside-health.example", "http://localhost:8000", "mail.riverside-health.example", "https://"],
)
def test_r_rfc8058_production_refuses_a_site_url_that_is_not_https(site_url):
    """R-RFC8058 (section 3.1): the one-click unsubscribe URI in List-Unsubscribe must be https, and it is built
    from SITE_URL; production refuses to start otherwise, and says why."""
    result = _manage("check", env=PRODUCTION_ENV | {"SITE_URL": site_url})

    assert result.returncode != 0
    assert "ImproperlyConfigured: SITE_URL must be an https:// address" in result.stderr
    assert "RFC 8058" in result.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"MESSAGE_ID_DOMAIN": "hipaamail.invalid"},
        {"MESSAGE_ID_DOMAIN": "mail.riverside-health.test"},
        {"MESSAGE_ID_DOMAIN": "riverside-health.example"},
        {"MESSAGE_ID_DOMAIN": "example.com"},
        {"MESSAGE_ID_DOMAIN": "localhost"},
        {"MESSAGE_ID_DOMAIN": "mail.localhost"},
        {"MESSAGE_ID_DOMAIN": "RIVERSIDE.INVALID."},
        {"MESSAGE_ID_DOMAIN": "10.0.0.5"},
        {"DEFAULT_FROM_EMAIL": "Riverside Health <news@riverside-health.example>"},
        {"DEFAULT_FROM_EMAIL": "news@localhost"},
    ],
    ids=lambda env: next(iter(env.values())),
)
def test_r_canspam_headers_production_refuses_a_reserved_message_id_domain(env):
    """R-CANSPAM-HEADERS: Message-IDs name a domain of ours (MESSAGE_ID_DOMAIN, else DEFAULT_FROM_EMAIL's); a
    reserved name (.invalid, .test, .example, localhost: RFC 2606, RFC 6761) or an address would make them
    neither ours nor unique, so production refuses to start and names the settings to fix."""
    result = _manage("check", env=PRODUCTION_ENV | env)

    assert result.returncode != 0
    assert "ImproperlyConfigured: The Message-ID domain" in result.stderr
    assert "MESSAGE_ID_DOMAIN" in result.stderr and "DEFAULT_FROM_EMAIL" in result.stderr


def test_r_canspam_headers_production_message_ids_name_the_sending_domain_or_message_id_domain():
    """R-CANSPAM-HEADERS: unless MESSAGE_ID_DOMAIN is set, production's Message-IDs are under DEFAULT_FROM_EMAIL's
    domain, with the installation's tag."""
    code = "from campaigns.sending.messages import message_id_for; print(message_id_for(42))"

    derived = _manage("shell", "--verbosity", "0", "-c", code, env=PRODUCTION_ENV)
    configured = _manage(
        "shell", "--verbosity", "0", "-c", code, env=PRODUCTION_ENV | {"MESSAGE_ID_DOMAIN": "mail.riverside-health.org"}
    )

    assert derived.returncode == 0, derived.stderr
    assert configured.returncode == 0, configured.stderr
    assert re.fullmatch(r"<delivery-42\.[0-9a-f]{16}@riverside-health\.org>\n", derived.stdout)
    assert re.fullmatch(r"<delivery-42\.[0-9a-f]{16}@mail\.riverside-health\.org>\n", configured.stdout)
