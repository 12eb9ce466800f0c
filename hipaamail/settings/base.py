"""Settings shared by every environment, read from the environment (12-factor, django-environ).

Without DATABASE_URL the product runs on SQLite and without CELERY_BROKER_URL on kombu's filesystem
transport, so a fresh clone needs no external service. local.py, test.py and production.py refine this.
"""
import ipaddress
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(environ.Env().str("HIPAAMAIL_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

SECRET_KEY = env.str("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
SITE_URL = env.str("SITE_URL", default="http://localhost:8000")


def _is_ip_address(host: str) -> bool:
    """An IPv4 or IPv6 literal (urlsplit gives IPv6 hosts without their brackets)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "allauth",
    "allauth.account",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_otp_webauthn",
    "hipaamail",
    "accounts",
    "audit",
    "consent",
    "campaigns",
    "ninja",
    "journeys",
    "api",
    "observability",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A page for a 405 a browser asked for (the other error pages are Django's own handlers with templates/4xx.html,
    # 500.html); outside the rest, so that MethodNotAllowedMiddleware's empty 405 gets it.
    "hipaamail.error_pages.MethodNotAllowedPageMiddleware",
    # Cache-Control: no-store on every response of ours; outside all the others so that their answers (redirects to
    # sign in, CSRF failures, 404s) get it too. Production's whitenoise goes before it: static files keep their cache.
    "hipaamail.middleware.NoStoreMiddleware",
    "hipaamail.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language of each request (issue 17, item 6): the django_language cookie (the patient's switcher, and
    # the patient's stored language when they arrive from a link), else the browser's Accept-Language, else
    # LANGUAGE_CODE. After the session, before CommonMiddleware (Django's documented order).
    "django.middleware.locale.LocaleMiddleware",
    # A signed-in staff member's stored language (the header's switch, ADR 0030) over the browser's.
    "accounts.language.StaffLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check, so that a PUT or DELETE gets 405 with Allow rather than a CSRF refusal; the access
    # check comes later, so a staff URL's Allow is visible to anyone (what a URL is for is no secret, its data is).
    "hipaamail.middleware.MethodNotAllowedMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After AuthenticationMiddleware, or request.user.is_verified() is silently missing (NOTES.md).
    "django_otp.middleware.OTPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "hipaamail.middleware.RequestIdMiddleware",
    # The integration API: Idempotency-Key on every POST, one audit event per call (after the request id).
    "api.middleware.ApiMiddleware",
    "hipaamail.middleware.StaffSessionLifetimeMiddleware",
    "hipaamail.middleware.DenyByDefaultMiddleware",
    "hipaamail.middleware.NotFoundMiddleware",
]

ROOT_URLCONF = "hipaamail.urls"
WSGI_APPLICATION = "hipaamail.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "hipaamail.context_processors.staff_roles",
                "hipaamail.context_processors.review_counts",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------
# PostgreSQL when DATABASE_URL is set; otherwise the zero-service demo on SQLite. IMMEDIATE makes every
# transaction take SQLite's write lock at BEGIN, so the check-and-send transaction serialises against a
# revocation the way PostgreSQL's row locks make it (SQLite ignores SELECT ... FOR UPDATE).
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "demo.sqlite3",
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
        }
    }
# Services own their transactions (STYLE.md).
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Accounts: allauth for sign-in, django-otp for the second factor -----------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
SITE_ID = 1
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_ADAPTER = "accounts.adapters.StaffAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = True
ACCOUNT_SESSION_REMEMBER = False
# allauth's login throttling, kept in the cache (per IP and per account). Failed sign-ins over "login_failed" get
# a form error; sign-in POSTs over "login" and password resets over allauth's defaults get 429 (accounts.throttle).
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key", "login": "30/m/ip"}
# The client address behind this many proxies that append X-Forwarded-For (Caddy, nginx with
# `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for`): 0 reads REMOTE_ADDR. allauth's limits and
# accounts.throttle both count per this address.
ALLAUTH_TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# Abuse resistance of the pages anyone can reach (accounts.throttle): amount/period/ip or /key, comma-separated;
# "" turns a scope off. Counted in the cache (CACHES: Redis in production, so global). "key" is the account: the
# staff member's email, the address a code was asked for, the signed-in patient, the invitation or unsubscribe link.
HIPAAMAIL_THROTTLE_ENABLED = env.bool("THROTTLE_ENABLED", default=True)
HIPAAMAIL_THROTTLES = {
    "staff_sign_in": env.str("THROTTLE_STAFF_SIGN_IN", default="20/m/ip,10/15m/key"),
    "portal_code_request": env.str("THROTTLE_PORTAL_CODE_REQUEST", default="10/m/ip,5/15m/key"),
    "portal_code_entry": env.str("THROTTLE_PORTAL_CODE_ENTRY", default="20/m/ip,10/15m/key"),
    "signing": env.str("THROTTLE_SIGNING", default="30/m/ip,10/m/key"),
    # Mailbox providers POST one-click unsubscribes (RFC 8058) from a few addresses of theirs: the per-address rules
    # are generous, the per-link one is not; links that are not ours have their own, strict rule. The per-second rule
    # spreads a burst: each of our links costs an audit row (or a revocation), about 12 ms of a web worker.
    "unsubscribe": env.str("THROTTLE_UNSUBSCRIBE", default="10/s/ip,300/m/ip,20/m/key"),
    "unsubscribe_bad_token": env.str("THROTTLE_UNSUBSCRIBE_BAD_TOKEN", default="30/m/ip"),
}
# (accounts.apps checks every scope's rules at start-up and refuses a mistyped one, naming its variable.)
# Unsubscribe links that are not ours are audited as one count per interval (campaigns.services.unsubscribe), not
# one row per request: anonymous requests cannot grow the append-only audit trail by more than a row a minute.
HIPAAMAIL_UNSUBSCRIBE_BAD_TOKEN_INTERVAL = env.int("UNSUBSCRIBE_BAD_TOKEN_INTERVAL", default=60)
# The live-count index (campaigns.selectors.count_index, ADR 0022): each web process keeps what the segment builder counts
# in memory (about 60 bytes a patient, loaded in the background) and answers in tens of milliseconds; until it is
# loaded, and on SQLite, the counts come from SQL. Off: always SQL.
HIPAAMAIL_COUNT_INDEX = env.bool("COUNT_INDEX", default=True)
OTP_TOTP_ISSUER = "hipaamail"
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
# django-otp's own admins hide device secrets too (accounts/admin.py replaces them anyway).
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# R-SEC-MFA step-up grace (accounts.reentry, issue 17): after a step-up by code or passkey, further step-ups by the
# same user in the same session pass for this many seconds (each still audited, "by": "grace"); 0 turns it off.
HIPAAMAIL_STEPUP_GRACE_SECONDS = env.int("STEPUP_GRACE_SECONDS", default=300)
# Staff notices (submitted, approved, rejected, sent) are mailed as well as shown in the product; off: product only.
HIPAAMAIL_NOTICE_EMAIL = env.bool("NOTICE_EMAIL", default=True)
# Passkeys (R-SEC-MFA): WebAuthn credentials are django-otp devices (django-otp-webauthn), a second factor only.
# The relying party id is the domain passkeys are bound to (changing it orphans every registered passkey); the
# allowed origins are the exact origins pages are served from. The demo defaults follow SITE_URL (localhost, where
# browsers allow WebAuthn over plain http); production.py insists on https.
# A relying party id must be a domain, never an IP address (WebAuthn Level 2, "RP ID": a valid domain string, which
# the URL Standard defines as a host that is not an IP address), so a SITE_URL on an IP address (the demo opened from another machine of the LAN) cannot carry
# passkeys: they stay on http://localhost at SITE_URL's port, and hipaamail.checks says so with a warning
# (hipaamail.W001) instead of django-otp-webauthn's error failing every command.
_site = urlsplit(SITE_URL)
_site_on_ip = _site.hostname is not None and _is_ip_address(_site.hostname)
if _site_on_ip:
    _passkey_host, _passkey_origin = "localhost", "http://localhost" + (f":{_site.port}" if _site.port else "")
else:
    _passkey_host, _passkey_origin = _site.hostname or "localhost", SITE_URL.rstrip("/")
OTP_WEBAUTHN_RP_ID = env.str("WEBAUTHN_RP_ID", default=_passkey_host)
OTP_WEBAUTHN_RP_NAME = env.str("WEBAUTHN_RP_NAME", default="hipaamail")
OTP_WEBAUTHN_ALLOWED_ORIGINS = env.list("WEBAUTHN_ALLOWED_ORIGINS", default=[_passkey_origin])
# Never passwordless: a passkey stands in for the TOTP code after the password, not for the password.
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# R-SEC-AUTOLOGOFF: a staff session ends after 15 idle minutes (the cookie age is renewed on every
# request) and at the latest 12 hours after sign-in (StaffSessionLifetimeMiddleware).
SESSION_COOKIE_AGE = 15 * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
STAFF_SESSION_ABSOLUTE_LIFETIME = timedelta(hours=12)
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# --- Content-Security-Policy (hipaamail.middleware.ContentSecurityPolicyMiddleware) --------------------
# Sent on every HTML page that does not set its own. Scripts only from this origin: pages keep their scripts in
# static/js/ (no inline script, no on...= handler, no javascript: URL). Styles also inline: templates use style
# attributes and the email preview's HTML has its CSS inlined (it is shown in a sandboxed srcdoc frame, which
# inherits this policy). A deployment may tighten it through CONTENT_SECURITY_POLICY; empty sends no header.
HIPAAMAIL_CONTENT_SECURITY_POLICY = env.str(
    "CONTENT_SECURITY_POLICY",
    default=(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
        "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
)

# --- Celery ---------------------------------------------------------------------------------------------
# Redis (or RabbitMQ) when CELERY_BROKER_URL is set; otherwise kombu's filesystem transport, which needs
# no server and still runs a real worker and a real beat (NOTES.md).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
# How long a message may sit in the broker before its consumer sees it: Redis and RabbitMQ push (none); the
# filesystem broker is polled, every half second.
_broker_polling_seconds = 0.0
if not CELERY_BROKER_URL:
    _broker_dir = VAR_DIR / "broker"
    _broker_polling_seconds = 0.5
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "data"),
        "data_folder_out": str(_broker_dir / "data"),
        "control_folder": str(_broker_dir / "control"),
        "polling_interval": _broker_polling_seconds,
    }
# How long the readiness probe waits for the workers' answers to each of its control commands (hipaamail/health.py):
# a second for the worker to answer, plus two polling intervals on a polled broker, one for the worker to see the
# command and one for the probe to see the answer (the demo: 2 s; a 1 s wait there made /health/ready 503).
HIPAAMAIL_HEALTH_WORKER_SECONDS = 1.0 + 2 * _broker_polling_seconds
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Two queues (DESIGN.md, "Rate limits and priorities"). "transactional": mail a person is waiting for (a patient's
# sign-in code, an invitation, the copy of a signed form); "campaigns": everything else (dispatch, launch, the
# reconciler, imports). A campaign's dispatch task runs for as long as the campaign sends, so run at least one
# worker on "transactional" alone: then a big campaign never holds up a sign-in code (README, "Operations").
CELERY_TASK_DEFAULT_QUEUE = "campaigns"
HIPAAMAIL_TRANSACTIONAL_TASKS = (
    "consent.tasks.sign_in_code_send_task",
    "consent.tasks.invitation_send_task",
    "consent.tasks.authorization_copy_send_task",
    # A review notice to staff (campaigns.notices): not a patient's, but a person waits for it too.
    "campaigns.tasks.notice_mail_send_task",
)
CELERY_TASK_ROUTES = {
    "campaigns.tasks.campaign_dispatch_task": {"queue": "campaigns"},
    **{name: {"queue": "transactional"} for name in HIPAAMAIL_TRANSACTIONAL_TASKS},
    # Outgoing webhooks (api.tasks): a CRM waiting to hear what a patient decided never waits behind a blast.
    "api.tasks.webhook_deliver_task": {"queue": "transactional"},
    "api.tasks.webhook_deliveries_due_task": {"queue": "transactional"},
    "api.tasks.idempotency_records_prune_task": {"queue": "transactional"},
    # Journeys (ADR 0016): triggered messages and the scans that queue them never wait behind a blast.
    "journeys.tasks.journey_advance_task": {"queue": "transactional"},
    "journeys.tasks.journey_triggers_scan_task": {"queue": "transactional"},
}
# Transactional mail tasks run in the calling process instead of a worker when set: the test suite only (its
# locmem outbox), never production.
HIPAAMAIL_TRANSACTIONAL_MAIL_EAGER = False
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "launch-due-campaigns": {"task": "campaigns.tasks.campaign_launch_due_task", "schedule": 15.0},
    "rewake-unfinished-campaigns": {"task": "campaigns.tasks.campaign_rewake_task", "schedule": 60.0},
    # Unsubscribe links that were not ours, audited as one count per ended interval (campaigns.services.unsubscribe).
    "unsubscribe-bad-tokens-flush": {"task": "campaigns.tasks.unsubscribe_bad_tokens_flush_task", "schedule": 60.0},
    "invite-renewals": {"task": "consent.tasks.authorization_renewals_invite_task", "schedule": 24 * 3600.0},
    # The live counts' summary against the evidence (consent.periodic, ADR 0021): a difference is logged as an error.
    "check-authorization-standing": {"task": "consent.tasks.authorization_standing_check_task", "schedule": 24 * 3600.0},
    "rewake-unfinished-imports": {"task": "consent.tasks.patient_import_rewake_task", "schedule": 300.0},
    # The live counts' change log (ADR 0022) is kept a day.
    "count-changes-prune": {"task": "consent.tasks.count_changes_prune_task", "schedule": crontab(minute=41)},
    # The webhook outbox (api.periodic): first attempts whose task was lost, and retries whose back-off has passed.
    "webhook-deliveries-due": {"task": "api.tasks.webhook_deliveries_due_task", "schedule": 10.0},
    # Journeys (journeys.periodic): route new events, run the steps that are due (an indexed scan of the due time,
    # never one ETA task per step), and enrol on dates, segment entries and nearing expiries.
    "journeys-advance": {"task": "journeys.tasks.journey_advance_task", "schedule": env.float("JOURNEY_SCAN_SECONDS", default=5.0)},
    "journeys-triggers": {"task": "journeys.tasks.journey_triggers_scan_task", "schedule": 600.0},
    # Idempotency-Key answers are kept a day (api.middleware).
    "idempotency-records-prune": {"task": "api.tasks.idempotency_records_prune_task", "schedule": crontab(minute=17)},
    # R-SEC-INTEGRITY (docs/backups.md, "The audit chain on a schedule"): sign the audit chain's head every hour,
    # verify the whole chain every night (alerting compliance officers and administrators at a break).
    "audit-checkpoint": {"task": "audit.tasks.audit_checkpoint_task", "schedule": crontab(minute=0)},
    "audit-verify": {"task": "audit.tasks.audit_verify_task", "schedule": crontab(hour=2, minute=30)},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Webhook receivers must be https:// (R-SEC-TLS); local development and the test suite allow plain http.
HIPAAMAIL_WEBHOOK_ALLOW_HTTP = False

# --- Mail -----------------------------------------------------------------------------------------------
# The demo writes every message to a local outbox folder; production sends over SMTP with TLS required.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = VAR_DIR / "outbox"
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = 30
# R-SEC-TLS: the relay's certificate is always verified, against the system's CA store plus, when set, the CA
# certificates in this PEM file (a relay with a private CA). Both the campaign transport and Django's SMTP backend
# use it (campaigns.sending.tls). Never a way to turn verification off.
HIPAAMAIL_EMAIL_CA_FILE = env.str("EMAIL_CA_FILE", default="")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Riverside Health <news@riverside-health.example>")
# R-CANSPAM-ADDRESS: the organisation's postal address goes in every marketing footer.
# R-CANSPAM-HEADERS: marketing replies go to a monitored address of the organisation (default: the sender).
HIPAAMAIL_REPLY_TO = env.str("REPLY_TO_EMAIL", default=DEFAULT_FROM_EMAIL)
HIPAAMAIL_ORGANISATION_NAME = env.str("ORGANISATION_NAME", default="Riverside Health")
HIPAAMAIL_POSTAL_ADDRESS = env.str("ORGANISATION_POSTAL_ADDRESS", default="100 River Road, Springfield, IL 62701")
# Wherever a patient page says "call us" (issue 17, item 5): the number and the hours someone answers it. The hours
# are written by people, so each language has its own (ORGANISATION_HOURS_ES for Spanish; English when it is empty).
HIPAAMAIL_ORGANISATION_PHONE = env.str("ORGANISATION_PHONE", default="217-555-0100")
HIPAAMAIL_ORGANISATION_HOURS = env.str("ORGANISATION_HOURS", default="Monday to Friday, 8 am to 6 pm Central Time")
HIPAAMAIL_ORGANISATION_HOURS_ES = env.str(
    "ORGANISATION_HOURS_ES", default="de lunes a viernes, de 8 a. m. a 6 p. m., hora del centro"
)
HIPAAMAIL_MESSAGE_ID_DOMAIN = env.str("MESSAGE_ID_DOMAIN", default="")  # "": DEFAULT_FROM_EMAIL's domain
# Deliveries a sender claims at once (one lease, one SMTP session, one render of the campaign). The locks a revocation
# waits for are bounded by SEND_LOCK_SECONDS per check-to-send window whatever this is (ADR 0010); a larger batch
# spreads the claim, the campaign's render and the connection over more messages: 500 sends about a fifth faster
# than 200 (bench/send_campaign.py, docs/benchmarks.md "Update, 2026-12-07 (afternoon)").
HIPAAMAIL_SEND_BATCH_SIZE = env.int("SEND_BATCH_SIZE", default=500)
# How many senders a launch wakes at once (each claims its own batches): the campaigns-worker processes of every
# host together, so a big campaign uses them all from the start (docs/scaling.md). 1: one, and the reconciler
# wakes one more each minute.
HIPAAMAIL_SEND_DISPATCHERS = env.int("SEND_DISPATCHERS", default=1)

# --- Journeys and fatigue (ADR 0016) ---
# At most FREQUENCY_CAP marketing messages per patient in FREQUENCY_CAP_DAYS days, campaigns and journeys together
# (0: no cap). Treatment and operations messages (a refill reminder) are neither counted nor capped.
HIPAAMAIL_FREQUENCY_CAP = env.int("FREQUENCY_CAP", default=0)
HIPAAMAIL_FREQUENCY_CAP_DAYS = env.int("FREQUENCY_CAP_DAYS", default=7)
# No journey message starts in these local hours of the patient (their Patient.time_zone, else TIME_ZONE): a step
# due then is held to the end of the quiet hours. "" for none.
HIPAAMAIL_QUIET_HOURS = env.str("QUIET_HOURS", default="21:00-08:00")
# How many real seconds a journey's "minute" lasts: 60, but for the tests that run a journey in seconds.
HIPAAMAIL_JOURNEY_MINUTE_SECONDS = env.float("JOURNEY_MINUTE_SECONDS", default=60.0)
# Events older than this enrol no one (a backfilled year of history must not start a year of follow-ups).
HIPAAMAIL_JOURNEY_EVENT_MAX_AGE_DAYS = env.int("JOURNEY_EVENT_MAX_AGE_DAYS", default=7)
# Enrolments one scanner pass takes (one transaction).
HIPAAMAIL_JOURNEY_BATCH_SIZE = env.int("JOURNEY_BATCH_SIZE", default=500)
# Called inside every revocation's transaction with (patient_id=, purpose_id=): a journey enrolment of that purpose
# ends at the revocation's commit (R-REVOKE-ANYTIME). Dotted paths: consent never imports the apps above it.
HIPAAMAIL_REVOCATION_HOOKS = ["journeys.services.enrolments.enrolments_end_on_revocation"]
# The send pipeline (campaigns.sending.dispatch.delivery_dispatch_batch, campaigns.sending.transport).
# "django": Django's EMAIL_BACKEND above (locmem in tests, the demo's outbox folder); "smtp": smtplib straight to
# EMAIL_HOST, one connection per batch, the fast path for production.
HIPAAMAIL_TRANSPORT = env.str("HIPAAMAIL_TRANSPORT", default="django")
# R-SEC-TLS: the smtp transport requires EMAIL_USE_TLS or EMAIL_USE_SSL, except to a loopback relay when this is
# set (the demo, the tests, the benchmark's local sink). production.py should set it False.
HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK = env.bool("SMTP_ALLOW_PLAINTEXT_LOOPBACK", default=True)
HIPAAMAIL_SMTP_RECONNECT_EVERY = env.int("SMTP_RECONNECT_EVERY", default=500)
# RFC 2920: MAIL FROM, RCPT TO and DATA in one write when the relay advertises PIPELINING (two round trips a
# message instead of four). Off only to compare, or for a relay that advertises it and gets it wrong.
HIPAAMAIL_SMTP_PIPELINING = env.bool("SMTP_PIPELINING", default=True)
# A claimed delivery is a worker's for this long; after it, the reconciler's next dispatch may claim it again.
HIPAAMAIL_SEND_LEASE_SECONDS = env.int("SEND_LEASE_SECONDS", default=300)
# The check-to-send window (ADR 0010): every message is accepted by the mail server within this many seconds of
# the coverage check that allowed it; time-based ends are checked against the window's end; a revocation waits at
# most this long for a batch in flight. At most 5 s.
HIPAAMAIL_SEND_CHECK_WINDOW = env.float("SEND_CHECK_WINDOW", default=1.0)
# A window also stops starting messages once it has held its authorization locks this long (ADR 0010): the
# window bounds check-to-send for the evidence, this bounds how long a patient's revocation can wait behind a slow
# mail server. At most SEND_CHECK_WINDOW.
HIPAAMAIL_SEND_LOCK_SECONDS = env.float("SEND_LOCK_SECONDS", default=0.25)
if not 0 < HIPAAMAIL_SEND_CHECK_WINDOW <= 5:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SEND_CHECK_WINDOW must be more than 0 and at most 5 seconds.")
if not 0 < HIPAAMAIL_SEND_LOCK_SECONDS <= HIPAAMAIL_SEND_CHECK_WINDOW:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SEND_LOCK_SECONDS must be more than 0 and at most SEND_CHECK_WINDOW.")
# Messages per second across all workers, counted in Redis (HIPAAMAIL_RATE_LIMIT_REDIS_URL, "Many machines" below);
# 0: unlimited.
HIPAAMAIL_RATE_LIMIT = env.int("SEND_RATE_LIMIT", default=0)
# DKIM (campaigns/sending/dkim.py): with a key configured, every campaign message is signed so that the signature covers
# From, To, Subject, Date, Message-ID and both List-Unsubscribe headers (R-RFC8058). The key file holds a PEM RSA
# private key (2048 bits recommended); publish its public half as TXT at <selector>._domainkey.<domain>.
HIPAAMAIL_DKIM_PRIVATE_KEY_PATH = env.str("DKIM_PRIVATE_KEY_PATH", default="")
HIPAAMAIL_DKIM_SELECTOR = env.str("DKIM_SELECTOR", default="")
HIPAAMAIL_DKIM_DOMAIN = env.str("DKIM_DOMAIN", default="")
# Bounces and complaints (campaigns/sending/bounces.py, R-BOUNCE-SUPPRESS). Amazon SES through SNS: subscribe
# https://USER:PASSWORD@<host>/webhooks/amazon-ses/tracking/ with ANYMAIL_WEBHOOK_SECRET="USER:PASSWORD"; without
# the secret the webhook answers 404. SES_TOPIC_ARNS, when set, lists the only SNS topics accepted.
ANYMAIL = {
    "WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default=""),
    "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": env.bool("SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS", default=True),
}
HIPAAMAIL_SES_TOPIC_ARNS = env.list("SES_TOPIC_ARNS", default=[])
# Verify each SNS message's signature (the certificate is fetched from the SNS host named in the message, https only).
HIPAAMAIL_SES_VERIFY_SNS_SIGNATURES = env.bool("SES_VERIFY_SNS_SIGNATURES", default=True)
# A Maildir or mbox that bounces are delivered to (the envelope sender's mailbox): read every five minutes by
# campaigns.tasks.bounces_read_task, each report applied and then deleted. Empty: not read.
HIPAAMAIL_BOUNCE_MAILBOX = env.str("BOUNCE_MAILBOX", default="")
if HIPAAMAIL_BOUNCE_MAILBOX:
    CELERY_BEAT_SCHEDULE["read-bounce-mailbox"] = {"task": "campaigns.tasks.bounces_read_task", "schedule": 300.0}

# --- Encryption of direct identifiers at rest (R-SEC-ENCRYPT-REST, consent/crypto.py) ------------------
# "key-id:base64-key" entries, the first one current. The demo's keys are fixed and public: local.py and
# test.py set them; production.py requires both settings from the environment.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
IDENTIFIER_HASH_KEY = env.str("IDENTIFIER_HASH_KEY", default="")
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"  # never served directly: signed PDFs and scans go through permission-checked views

# --- Many machines (docs/scaling.md, ADR 0019) ---------------------------------------------------------
# What must be one across every host lives in Redis: the send rate limit's counters and beat's schedule with its
# leader lock. SHARED_REDIS_URL defaults to the cache's Redis (CACHE_URL), else the broker's when it is Redis; with
# RabbitMQ as the broker and no Redis cache, set it (or SEND_RATE_LIMIT_REDIS_URL) or the limit cannot be global.
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _redis_url_or_empty(url: str) -> str:
    return url if url.startswith(_REDIS_SCHEMES) else ""


HIPAAMAIL_SHARED_REDIS_URL = env.str(
    "SHARED_REDIS_URL",
    default=_redis_url_or_empty(env.str("CACHE_URL", default="")) or _redis_url_or_empty(CELERY_BROKER_URL),
)
HIPAAMAIL_RATE_LIMIT_REDIS_URL = env.str("SEND_RATE_LIMIT_REDIS_URL", default=HIPAAMAIL_SHARED_REDIS_URL)
for _name, _url in (("SHARED_REDIS_URL", HIPAAMAIL_SHARED_REDIS_URL), ("SEND_RATE_LIMIT_REDIS_URL", HIPAAMAIL_RATE_LIMIT_REDIS_URL)):
    if _url and not _url.startswith(_REDIS_SCHEMES):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{_name} must be a Redis URL (redis://, rediss:// or unix://), not {_url.split(':')[0]}:…")


def _rate_limit_refuse_without_shared_store(*, limit: int, redis_url: str, broker_url: str, always: bool) -> None:
    """SEND_RATE_LIMIT counted per process would multiply by the number of workers: refuse to start instead. The
    zero-service demo (one worker, the filesystem broker) may count in-process; production never (`always`).
    Settings-time ImproperlyConfigured rather than a system check: Celery workers, which apply the limit, never
    run Django's checks."""
    if not limit or redis_url:
        return
    if always or not broker_url.startswith(("filesystem://", "memory://")):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"SEND_RATE_LIMIT={limit} needs a Redis that every worker shares, or each worker would "
            "send that many messages per second on its own: set SHARED_REDIS_URL (or CACHE_URL, or "
            "SEND_RATE_LIMIT_REDIS_URL) to a redis:// URL, or SEND_RATE_LIMIT=0 (docs/scaling.md)."
        )


_rate_limit_refuse_without_shared_store(
    limit=HIPAAMAIL_RATE_LIMIT, redis_url=HIPAAMAIL_RATE_LIMIT_REDIS_URL, broker_url=CELERY_BROKER_URL, always=False
)

# Beat runs once however many hosts start it: with a shared Redis, celery-redbeat keeps the schedule there and
# only the beat holding its lock sends anything; another beat waits as a hot standby and takes the lock once the
# holder has not renewed it for BEAT_LOCK_SECONDS (ADR 0019). Without Redis (the demo), Celery's file scheduler.
HIPAAMAIL_BEAT_REDIS_URL = env.str("BEAT_REDIS_URL", default=HIPAAMAIL_SHARED_REDIS_URL)
if HIPAAMAIL_BEAT_REDIS_URL:
    CELERY_BEAT_SCHEDULER = "redbeat.RedBeatScheduler"
    CELERY_REDBEAT_REDIS_URL = HIPAAMAIL_BEAT_REDIS_URL
    CELERY_REDBEAT_KEY_PREFIX = env.str("BEAT_KEY_PREFIX", default="hipaamail:redbeat")
    # The leader renews its lock every tick (at most CELERY_BEAT_MAX_LOOP_INTERVAL apart); a standby takes over at
    # most BEAT_LOCK_SECONDS after the leader's last renewal.
    CELERY_REDBEAT_LOCK_TIMEOUT = env.int("BEAT_LOCK_SECONDS", default=30)
    CELERY_BEAT_MAX_LOOP_INTERVAL = max(1, CELERY_REDBEAT_LOCK_TIMEOUT // 5)

# Media (signed PDFs, scans, encrypted import files): the local MEDIA_ROOT, or with MEDIA_STORAGE=s3 a private,
# server-side encrypted S3-compatible bucket. Files are never served from the bucket: the permission-checked views
# read them and stream them (no public or signed bucket URLs ever reach a browser).
HIPAAMAIL_MEDIA_STORAGE = env.str("MEDIA_STORAGE", default="filesystem")
if HIPAAMAIL_MEDIA_STORAGE == "s3":
    _bucket = env.str("MEDIA_S3_BUCKET", default="")
    if not _bucket:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("MEDIA_STORAGE=s3 needs MEDIA_S3_BUCKET, the bucket signed PDFs and scans go to.")
    _kms_key = env.str("MEDIA_S3_KMS_KEY_ID", default="")
    _MEDIA_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _bucket,
            "endpoint_url": env.str("MEDIA_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("MEDIA_S3_REGION", default="") or None,
            # MEDIA_S3_ACCESS_KEY_ID / MEDIA_S3_SECRET_ACCESS_KEY, else boto3's own chain (the instance's role,
            # AWS_* variables): never in a settings file.
            "access_key": env.str("MEDIA_S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("MEDIA_S3_SECRET_ACCESS_KEY", default="") or None,
            "location": env.str("MEDIA_S3_PREFIX", default=""),
            "default_acl": "private",
            # .url() is never called by the product; were it called, a signed URL valid for a minute, never public.
            "querystring_auth": True,
            "querystring_expire": 60,
            "file_overwrite": False,
            # R-SEC-ENCRYPT-REST: the bucket encrypts every object (AES256, or aws:kms with MEDIA_S3_KMS_KEY_ID).
            "object_parameters": (
                {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": _kms_key}
                if _kms_key
                else {"ServerSideEncryption": "AES256"}
            ),
        },
    }
elif HIPAAMAIL_MEDIA_STORAGE == "filesystem":
    _MEDIA_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
else:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"MEDIA_STORAGE must be 'filesystem' or 's3', not {HIPAAMAIL_MEDIA_STORAGE!r}.")
# Other settings modules change STORAGES["staticfiles"] only (production: whitenoise); "default" is the media's.
STORAGES = {
    "default": _MEDIA_STORAGE,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Everything else ------------------------------------------------------------------------------------
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
LANGUAGE_CODE = "en"
# Patients in the United States often read Spanish first (issue 17, item 6). The catalogue is
# locale/es/LC_MESSAGES/django.po, with its compiled django.mo committed beside it (ADR 0025).
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="America/Chicago")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

# Logs (docs/operations.md): every line carries the request id or the Celery task's id and name; LOG_FORMAT=json
# writes one JSON object a line (production's default), plain a text line (the demo and the tests).
from observability.logs import logging_config  # standard library only: it loads no app

LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env.str("LOG_LEVEL", default="INFO"))
# The worker logs through LOGGING too (the same format, the task's ids), not through a handler of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Prometheus metrics (ADR 0018): GET /metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`, and does
# not exist without it. A worker serves its host's samples on METRICS_WORKER_PORT (0: none) with the same token.
HIPAAMAIL_METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
HIPAAMAIL_METRICS_WORKER_PORT = env.int("METRICS_WORKER_PORT", default=0)
HIPAAMAIL_METRICS_WORKER_ADDRESS = env.str("METRICS_WORKER_ADDRESS", default="0.0.0.0")
