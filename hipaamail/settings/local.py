"""The zero-service demo and local development: SQLite, filesystem broker, outbox folder."""
from .base import *  # noqa: F401,F403
from .base import FIELD_ENCRYPTION_KEYS, IDENTIFIER_HASH_KEY, SECRET_KEY, VAR_DIR

DEBUG = True
# A fixed key is fine here: this settings module is never used in production (production.py fails fast).
SECRET_KEY = SECRET_KEY or "demo-only-insecure-key-do-not-use-in-production-6f1c2"
for _folder in ("outbox", "broker/data", "broker/control"):
    (VAR_DIR / _folder).mkdir(parents=True, exist_ok=True)

FIELD_ENCRYPTION_KEYS = FIELD_ENCRYPTION_KEYS or ["demo1:ZGVtby1vbmx5LWtleS1ub3QtZm9yLXJlYWwtZGF0YSE"]
IDENTIFIER_HASH_KEY = IDENTIFIER_HASH_KEY or "demo-only-identifier-hash-key"

# Webhook receivers on plain http:// (a local receiver in development and in the tests); production: https only.
HIPAAMAIL_WEBHOOK_ALLOW_HTTP = True
