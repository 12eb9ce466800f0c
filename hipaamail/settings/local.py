"""The zero-service demo and local development: SQLite, filesystem broker, outbox folder.

DEBUG is off unless DEBUG=1 is set (ADR 0028): people try pages they may not open in the demo, and must meet the
production error pages, not Django's debug pages listing every URL. scripts/run-demo serves the static files with
`runserver --insecure` for that reason; HIPAAMAIL_DEMO keeps the demo's own helpers (demo_totp, the outbox page)."""
from .base import *  # noqa: F401,F403
from .base import FIELD_ENCRYPTION_KEYS, IDENTIFIER_HASH_KEY, SECRET_KEY, VAR_DIR, env

DEBUG = env.bool("DEBUG", default=False)
HIPAAMAIL_DEMO = True
# A fixed key is fine here: this settings module is never used in production (production.py fails fast).
SECRET_KEY = SECRET_KEY or "demo-only-insecure-key-do-not-use-in-production-6f1c2"
for _folder in ("outbox", "broker/data", "broker/control"):
    (VAR_DIR / _folder).mkdir(parents=True, exist_ok=True)

FIELD_ENCRYPTION_KEYS = FIELD_ENCRYPTION_KEYS or ["demo1:ZGVtby1vbmx5LWtleS1ub3QtZm9yLXJlYWwtZGF0YSE"]
IDENTIFIER_HASH_KEY = IDENTIFIER_HASH_KEY or "demo-only-identifier-hash-key"

# One RFC 5322 file per message in var/outbox/ (Django's file backend writes one log per batch).
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="hipaamail.mail_outbox.EmlOutboxBackend")

# Webhook receivers on plain http:// (a local receiver in development and in the tests); production: https only.
HIPAAMAIL_WEBHOOK_ALLOW_HTTP = True
