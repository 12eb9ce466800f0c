"""Production: every secret from the environment, fail fast when one is missing, HTTPS only."""
from email.utils import parseaddr
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from whitenoise.compress import Compressor

from .base import *  # noqa: F401,F403
from .base import DEFAULT_FROM_EMAIL, HIPAAMAIL_MESSAGE_ID_DOMAIN, MIDDLEWARE, SITE_URL, env

# Every variable an installation must set, named together in one message so an operator fixes them in one go
# (.env.example lists the same names, with how to make each secret; the production smoke test reads them from there).
REQUIRED_ENVIRONMENT = (
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "SITE_URL",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "FIELD_ENCRYPTION_KEYS",
    "IDENTIFIER_HASH_KEY",
    "AUDIT_CHECKPOINT_KEYS",
    "DEFAULT_FROM_EMAIL",
    "EMAIL_HOST",
)
# How to make each secret (the same commands as .env.example's).
SECRET_RECIPES = {
    "SECRET_KEY": 'python3 -c "import secrets; print(secrets.token_urlsafe(50))"',
    "FIELD_ENCRYPTION_KEYS": (
        'python3 -c "import base64, secrets; '
        "print('k1:' + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('='))\""
    ),
    "IDENTIFIER_HASH_KEY": 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"',
    "AUDIT_CHECKPOINT_KEYS": 'python3 -c "import secrets; print(secrets.token_urlsafe(48))"',
}
_missing = [name for name in REQUIRED_ENVIRONMENT if not env.str(name, default="").strip()]
if _missing:
    _recipes = "; ".join(f"{name}: {SECRET_RECIPES[name]}" for name in _missing if name in SECRET_RECIPES)
    raise ImproperlyConfigured(
        f"Set {', '.join(_missing)} in the environment ({len(_missing)} of the {len(REQUIRED_ENVIRONMENT)} variables "
        "production requires are missing or empty)." + (f" Make the secrets with {_recipes}." if _recipes else "")
    )

DEBUG = False
SECRET_KEY = env.str("SECRET_KEY")  # raises ImproperlyConfigured when missing
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must name the hosts this instance serves.")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL")
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS")
IDENTIFIER_HASH_KEY = env.str("IDENTIFIER_HASH_KEY")
if not env.str("DATABASE_URL", default=""):
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL in production.")

# R-SEC-INTEGRITY: audit checkpoints are signed with a key of their own, kept in the secret store and never on the
# database host (whoever can rewrite the database must not also be able to re-sign a rewritten chain), and
# independent of SECRET_KEY, so that rotating SECRET_KEY does not invalidate every earlier checkpoint. Comma-separated, the first signs, all verify (rotation:
# put the new key first, keep the old ones after it). audit/checkpoints.py falls back to a key derived from
# SECRET_KEY; that is for the demo and the tests only. docs/backups.md, "The audit chain on a schedule".
_AUDIT_KEY_HELP = (
    'make one with: python -c "import secrets; print(secrets.token_urlsafe(48))" and keep it in the secret store, '
    "not on the database host (docs/backups.md)"
)
_AUDIT_KEY_MIN_LENGTH = 32  # audit.checkpoints.MIN_KEY_LENGTH (settings do not import the apps)
AUDIT_CHECKPOINT_KEYS = [key.strip() for key in env.str("AUDIT_CHECKPOINT_KEYS", default="").split(",") if key.strip()]
if not AUDIT_CHECKPOINT_KEYS:
    raise ImproperlyConfigured(
        "Set AUDIT_CHECKPOINT_KEYS: the key that signs audit checkpoints (comma-separated, newest first); "
        f"{_AUDIT_KEY_HELP}."
    )
if any(len(key) < _AUDIT_KEY_MIN_LENGTH for key in AUDIT_CHECKPOINT_KEYS):
    raise ImproperlyConfigured(
        f"Each AUDIT_CHECKPOINT_KEYS key needs at least {_AUDIT_KEY_MIN_LENGTH} characters; {_AUDIT_KEY_HELP}."
    )
# Optional: a file each checkpoint is also appended to, best on storage the database's administrators cannot
# rewrite (a mounted write-once bucket); audit_verify reads it back.
AUDIT_CHECKPOINT_FILE = env.str("AUDIT_CHECKPOINT_FILE", default="")

# R-SEC-TLS: web traffic is HTTPS only with HSTS; mail leaves over TLS and is never downgraded.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Account and alert mail (sign-in codes, invitations, signed copies, allauth's mail, the audit alert) is DKIM-signed
# with the campaign key when DKIM_PRIVATE_KEY_PATH is set, then sent by Django's SMTP backend (campaigns.sending.backend).
EMAIL_BACKEND = "campaigns.sending.backend.DkimEmailBackend"
HIPAAMAIL_DKIM_WRAPPED_EMAIL_BACKEND = env.str(
    "DKIM_WRAPPED_EMAIL_BACKEND", default="campaigns.sending.backend.SmtpEmailBackend"
)  # Django's SMTP backend trusting EMAIL_CA_FILE too (campaigns.sending.tls)
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
# The campaign sender speaks SMTP itself in production, with STARTTLS required (campaigns.sending.transport).
HIPAAMAIL_TRANSPORT = env.str("HIPAAMAIL_TRANSPORT", default="smtp")
HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK = False
if not (EMAIL_USE_TLS or EMAIL_USE_SSL):
    raise ImproperlyConfigured("Mail must leave over TLS (HIPAA Security Rule, 45 CFR 164.312(e)(1): transmission security): set EMAIL_USE_TLS or EMAIL_USE_SSL.")
CACHES = {"default": env.cache("CACHE_URL")}

# --- Serving (ADR 0017): gunicorn runs hipaamail.wsgi; whitenoise serves the static files with DEBUG off -------
# Right after SecurityMiddleware (so its HTTPS redirect and HSTS apply to static files too) and before everything
# that touches sessions or the database. Names carry a content hash (the manifest), so whitenoise sends them with a
# year's cache lifetime; compressed copies (gzip, Brotli when available) are made once, by collectstatic.
MIDDLEWARE = [*MIDDLEWARE]
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "whitenoise.middleware.WhiteNoiseMiddleware")
# Only the static files' storage: "default" is the media's (base.py: the filesystem, or S3 with MEDIA_STORAGE=s3).
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
# Source maps are fetched by developer tools only; compressing them (with Brotli at its slowest, best level) doubled
# collectstatic's time for nothing a patient or staff member downloads.
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = [*Compressor.SKIP_COMPRESS_EXTENSIONS, "map"]
# The load balancer's and the orchestrator's probes (hipaamail/health.py) speak plain HTTP inside the network: no
# redirect to https for them. They answer with no data but which check is down.
SECURE_REDIRECT_EXEMPT = [r"^health/"]

# R-RFC8058 section 3.1: the one-click unsubscribe URI every message carries is built from SITE_URL, and must be https.
_site = urlsplit(SITE_URL)
if _site.scheme != "https" or not _site.hostname:
    raise ImproperlyConfigured(
        f"SITE_URL must be an https:// address patients can reach (it is {SITE_URL!r}): every message's one-click "
        "unsubscribe link is built from it, and RFC 8058 section 3.1 requires https."
    )

# R-CANSPAM-HEADERS: Message-IDs name a domain of ours, MESSAGE_ID_DOMAIN or else DEFAULT_FROM_EMAIL's (the same
# derivation as campaigns.sending.messages.message_id_domain; settings do not import the apps). A reserved name (RFC 2606,
# RFC 6761), a name without a dot or an address makes them neither ours nor unique across the Internet.
_RESERVED_TOP_LABELS = ("invalid", "test", "example", "localhost")
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_message_id_domain = (
    (HIPAAMAIL_MESSAGE_ID_DOMAIN or parseaddr(DEFAULT_FROM_EMAIL)[1].rpartition("@")[2]).strip().rstrip(".").lower()
)
if (
    "." not in _message_id_domain
    or _message_id_domain.rsplit(".", 1)[1] in _RESERVED_TOP_LABELS
    or any(_message_id_domain == d or _message_id_domain.endswith(f".{d}") for d in _RESERVED_DOMAINS)
    or _message_id_domain.replace(".", "").isdigit()
    or any(character in _message_id_domain for character in "[]: ")
):
    raise ImproperlyConfigured(
        f"The Message-ID domain ({_message_id_domain or 'none'}) is a reserved name or not a domain: set "
        "DEFAULT_FROM_EMAIL to an address at the domain you send from, or MESSAGE_ID_DOMAIN to a domain of yours "
        "(Message-IDs must be globally unique, RFC 5322 section 3.6.4)."
    )

# Passkeys (R-SEC-MFA). The relying party id binds every passkey to a domain; a wrong one cannot be fixed later
# without every staff member registering their passkeys again. Unless set, it is the first of ALLOWED_HOSTS (itself
# required) and the origin is that host over https; it must be a plain domain, and every origin https on it.
OTP_WEBAUTHN_RP_ID = env.str("WEBAUTHN_RP_ID", default=ALLOWED_HOSTS[0]).strip().lower()
OTP_WEBAUTHN_RP_NAME = env.str("WEBAUTHN_RP_NAME", default=env.str("ORGANISATION_NAME", default="hipaamail"))
OTP_WEBAUTHN_ALLOWED_ORIGINS = env.list("WEBAUTHN_ALLOWED_ORIGINS", default=[f"https://{OTP_WEBAUTHN_RP_ID}"])
if (
    not OTP_WEBAUTHN_RP_ID
    or OTP_WEBAUTHN_RP_ID in ("localhost", "*")
    or OTP_WEBAUTHN_RP_ID.startswith(".")
    or OTP_WEBAUTHN_RP_ID.replace(".", "").isdigit()
    or ":" in OTP_WEBAUTHN_RP_ID
):
    raise ImproperlyConfigured(
        "Set WEBAUTHN_RP_ID to the domain staff sign in at (like mail.example.org): passkeys are bound to it."
    )
for _origin in OTP_WEBAUTHN_ALLOWED_ORIGINS:
    _host = _origin.removeprefix("https://").split(":")[0]
    if not _origin.startswith("https://") or not (
        _host == OTP_WEBAUTHN_RP_ID or _host.endswith(f".{OTP_WEBAUTHN_RP_ID}")
    ):
        raise ImproperlyConfigured(
            f"WEBAUTHN_ALLOWED_ORIGINS: {_origin!r} must be https:// on WEBAUTHN_RP_ID or a subdomain of it."
        )

# --- Many machines (docs/scaling.md, ADR 0019) ---------------------------------------------------------
# The send rate limit and beat's lock live in the shared Redis (base.py: SHARED_REDIS_URL, else CACHE_URL's Redis,
# else the broker's). A limit with no shared Redis refuses to start here whatever the broker.
from .base import (
    DATABASES,
    HIPAAMAIL_RATE_LIMIT,
    HIPAAMAIL_RATE_LIMIT_REDIS_URL,
    _rate_limit_refuse_without_shared_store,
)

_rate_limit_refuse_without_shared_store(
    limit=HIPAAMAIL_RATE_LIMIT, redis_url=HIPAAMAIL_RATE_LIMIT_REDIS_URL, broker_url=CELERY_BROKER_URL, always=True
)

# psycopg's connection pool (Django 5.1+): each process keeps DATABASE_POOL_MIN_SIZE..MAX_SIZE connections open and
# lends them per request or task; 0 turns it off (then CONN_MAX_AGE applies). The pool replaces persistent
# connections, so CONN_MAX_AGE must be 0 with it. The per-connection options (OPTIONS["options"] and the rest) are
# passed to every pooled connection as they are. Size it against max_connections: docs/scaling.md.
DATABASE_POOL_MIN_SIZE = env.int("DATABASE_POOL_MIN_SIZE", default=1)
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=4)
DATABASE_POOL_TIMEOUT = env.float("DATABASE_POOL_TIMEOUT", default=10.0)
if DATABASE_POOL_MAX_SIZE:
    if not 0 <= DATABASE_POOL_MIN_SIZE <= DATABASE_POOL_MAX_SIZE:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_MIN_SIZE ({DATABASE_POOL_MIN_SIZE}) must be between 0 and DATABASE_POOL_MAX_SIZE "
            f"({DATABASE_POOL_MAX_SIZE}); DATABASE_POOL_MAX_SIZE=0 turns the pool off."
        )
    if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
        raise ImproperlyConfigured("The connection pool needs PostgreSQL (DATABASE_URL=postgres://…).")
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DATABASE_POOL_MIN_SIZE,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": DATABASE_POOL_TIMEOUT,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

# --- Observability (ADR 0018, docs/operations.md): JSON logs, error reports, metrics ------------------------------
from observability.errors import sentry_init  # neither module loads an app
from observability.logs import logging_config

LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env.str("LOG_LEVEL", default="INFO"))
_METRICS_TOKEN_MIN_LENGTH = 32
if HIPAAMAIL_METRICS_TOKEN and len(HIPAAMAIL_METRICS_TOKEN) < _METRICS_TOKEN_MIN_LENGTH:
    raise ImproperlyConfigured(
        f"METRICS_TOKEN needs at least {_METRICS_TOKEN_MIN_LENGTH} characters (it guards /metrics); make one with: "
        'python -c "import secrets; print(secrets.token_urlsafe(32))", or unset it to turn /metrics off.'
    )
# Error reports go to Sentry only when SENTRY_DSN is set, scrubbed of PHI (observability.errors).
SENTRY_ENABLED = sentry_init(
    dsn=env.str("SENTRY_DSN", default=""),
    environment=env.str("SENTRY_ENVIRONMENT", default="production"),
    release=env.str("SENTRY_RELEASE", default=""),
    traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
)
