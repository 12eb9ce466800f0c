"""Settings for the test suite: fast hashing, in-memory mail, tasks captured rather than sent to a broker.

CI points DATABASE_URL at PostgreSQL and CELERY_BROKER_URL at Redis; the real-worker tests use both.
"""
from .base import *  # noqa: F401,F403
from .base import DATABASES, VAR_DIR, env

SECRET_KEY = "test-only-key-0f9a7c2b"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.locmem.EmailBackend")
ALLOWED_HOSTS = ["*"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ACCOUNT_RATE_LIMITS = False
# The suite signs in, asks for codes and unsubscribes far faster than people do, from one address, with a cache
# that outlives each test: the throttle tests turn throttling on themselves (accounts/tests/test_throttle.py).
HIPAAMAIL_THROTTLE_ENABLED = False
# The index reads committed data on a connection of its own, which a test's rolled-back transaction never reaches:
# its own tests turn it on over committed data (campaigns/tests/test_count_index.py); every other test counts
# with SQL.
HIPAAMAIL_COUNT_INDEX = False
for _folder in ("outbox", "broker/data", "broker/control"):
    (VAR_DIR / _folder).mkdir(parents=True, exist_ok=True)

if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # The audit table's TRUNCATE trigger yields only to this session setting, which test connections carry
    # so that pytest-django can flush between transactional tests. Production connections never set it.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c hipaamail.allow_truncate=on"

FIELD_ENCRYPTION_KEYS = ["test1:dGVzdC1vbmx5LWVuY3J5cHRpb24ta2V5LTMyYnl0ZSE"]
IDENTIFIER_HASH_KEY = "test-only-identifier-hash-key"
# Sign-in codes, invitations and signed copies are Celery tasks on the "transactional" queue; the suite runs them
# in-process (the locmem outbox) rather than eagerly running every task, which would also run campaign dispatch
# and imports inside tests that publish to the broker on purpose. campaigns/tests/sending/test_queues.py covers routing.
HIPAAMAIL_TRANSACTIONAL_MAIL_EAGER = True

# Webhook receivers on plain http:// (a local receiver in development and in the tests); production: https only.
HIPAAMAIL_WEBHOOK_ALLOW_HTTP = True
