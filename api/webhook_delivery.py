"""The webhook sender: signs one delivery in the Standard Webhooks format and POSTs it, once per claim.

What the tasks run (api.tasks); it imports nothing that enqueues it. The truth is in the WebhookDelivery row: a
worker claims it with a lease (one conditional UPDATE, in the database's clock), posts outside any transaction,
then records the outcome. A 2xx answer delivers; anything else (another code, a redirect, a timeout, a refused
connection) schedules the next attempt by BACKOFF; after the last, the delivery fails and the audit trail says so.

Signing (https://www.standardwebhooks.com/): `webhook-id` is the delivery's message_id, the same on every attempt
(the receiver's deduplication key); `webhook-timestamp` the attempt's Unix time; `webhook-signature`
`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed by the secret's decoded bytes (`whsec_<base64>`).

R-NO-PHI-LEAK: the body holds ids and codes only (api.webhooks builds it); last_error is a short kind of failure,
never the receiver's answer, and nothing here logs a URL's query or a body.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext as _

from api.models import WebhookDelivery
from audit import actions
from audit.services import audit_record
from consent import crypto

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 bytes
TIMEOUT_SECONDS = 5
# A claimed delivery is left alone for this long: longer than one POST can take (connect + read timeouts), so a
# worker's lease never runs out under it; a worker that dies mid-POST only delays the next attempt by this much.
LEASE = timedelta(seconds=60)
# The wait after the 1st, 2nd, ... failed attempt. After the attempt that follows the last wait, the delivery fails:
# 1 + len(BACKOFF) attempts over about 45 hours.
BACKOFF = (
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(BACKOFF) + 1
USER_AGENT = "hipaamail-webhooks/1"


# --- Standard Webhooks signing ---------------------------------------------------------------------------


def secret_generate() -> str:
    """A new signing secret, `whsec_<base64 of 32 random bytes>`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _secret_key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("A webhook secret starts with whsec_.")
    return base64.b64decode(secret[len(SECRET_PREFIX):])


def signature_make(*, secret: str, message_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    digest = hmac.new(_secret_key(secret), f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(*, secret: str, message_id: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers of one attempt: content type, the three webhook-* headers and our user agent."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_make(secret=secret, message_id=message_id, timestamp=timestamp, body=body),
    }


def body_of(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


# --- URL policy ------------------------------------------------------------------------------------------


def url_refusal(url: str) -> str:
    """Why a receiver URL is refused ("" when it is allowed): https only (R-SEC-TLS), plain http only where
    settings.HIPAAMAIL_WEBHOOK_ALLOW_HTTP allows it (local development and the test suite)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _("The address is not a URL.")
    if not parts.hostname:
        return _("The address has no host.")
    if parts.username or parts.password:
        return _("The address may not carry a user name or password.")
    if parts.scheme == "https":
        return ""
    if parts.scheme == "http" and getattr(settings, "HIPAAMAIL_WEBHOOK_ALLOW_HTTP", False):
        return ""
    return _("The address must start with https:// (webhooks leave over TLS only).")


# --- Claiming, posting, recording ------------------------------------------------------------------------


def webhook_delivery_claim(*, delivery_id: int) -> bool:
    """Take the lease on a delivery that is pending, due, and not claimed (or whose lease ran out). One UPDATE,
    so of two workers that try at once exactly one gets it."""
    claimed = (
        WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=Now())
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=Now()))
        .update(claimed_until=Now() + LEASE)
    )
    return claimed == 1


def webhook_post(*, url: str, body: str, headers: dict[str, str]) -> tuple[int | None, str]:
    """POST once, no redirect followed. Returns (HTTP status or None, short error or "")."""
    try:
        response = requests.post(
            url, data=body.encode(), headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False, stream=True
        )
    except requests.RequestException as error:
        # The exception's kind only: its text repeats the URL and the receiver's words.
        return None, f"no answer: {type(error).__name__}"[:200]
    try:
        status = response.status_code
    finally:
        response.close()  # the body is never read, never stored
    if 200 <= status < 300:
        return status, ""
    if 300 <= status < 400:
        return status, f"HTTP {status}: redirects are not followed"
    return status, f"HTTP {status}"


def webhook_delivery_attempt(*, delivery_id: int) -> str:
    """Claim, post and record one attempt of this delivery. Returns what happened: "delivered", "retry",
    "failed", or "skipped" (not pending, not due, or claimed by another worker). Safe to run twice."""
    if not webhook_delivery_claim(delivery_id=delivery_id):
        return "skipped"
    delivery = WebhookDelivery.objects.select_related("subscription__api_key").filter(pk=delivery_id).first()
    if delivery is None:  # its subscription was deleted meanwhile
        return "skipped"
    subscription = delivery.subscription
    key = subscription.api_key
    refusal = ""
    if not subscription.active or key.revoked_at is not None or (
        key.expires_at is not None and key.expires_at <= timezone.now()
    ):
        refusal = "the subscription is no longer active"
    elif url_refusal(subscription.url):
        refusal = "the address is not allowed"
    if refusal:
        return _outcome_record(delivery, status_code=None, error=refusal, final=True)
    try:
        secret = crypto.decrypt(subscription.secret)
    except (KeyError, ValueError):
        # Encrypted under a key that was retired: nothing can sign it any more; retrying would not help.
        return _outcome_record(
            delivery, status_code=None, error="the signing secret can no longer be read; add the webhook again",
            final=True,
        )
    body = body_of(delivery.payload)
    headers = signed_headers(secret=secret, message_id=delivery.message_id, body=body)
    status_code, error = webhook_post(url=subscription.url, body=body, headers=headers)
    return _outcome_record(delivery, status_code=status_code, error=error, final=False)


def _outcome_record(delivery: WebhookDelivery, *, status_code: int | None, error: str, final: bool) -> str:
    with transaction.atomic():
        # Still ours: only the holder of the lease records an outcome (a row that is no longer pending was
        # settled by someone else, e.g. an administrator who deleted the subscription meanwhile).
        row = (
            WebhookDelivery.objects.select_for_update()
            .filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING)
            .first()
        )
        if row is None:
            return "skipped"
        row.attempts += 1
        row.last_status_code = status_code
        row.last_error = error[:200]
        row.claimed_until = None
        fields = ["attempts", "last_status_code", "last_error", "claimed_until", "status"]
        if not error:
            row.status = WebhookDelivery.Status.DELIVERED
            row.delivered_at = timezone.now()
            row.save(update_fields=[*fields, "delivered_at"])
            return "delivered"
        if final or row.attempts >= MAX_ATTEMPTS:
            row.status = WebhookDelivery.Status.FAILED
            row.save(update_fields=fields)
            audit_record(
                actor=None,
                actor_role=actions.SYSTEM,
                action=actions.WEBHOOK_DELIVERY_FAILED,
                object_type="webhook_delivery",
                object_id=row.pk,
                details={
                    "subscription_id": row.subscription_id,
                    "event_type": row.event_type,
                    "attempts": row.attempts,
                    "last_status_code": status_code,
                },
            )
            logger.warning("webhook delivery %s failed after %s attempts", row.pk, row.attempts)
            return "failed"
        row.next_attempt_at = timezone.now() + BACKOFF[row.attempts - 1]
        row.save(update_fields=[*fields, "next_attempt_at"])
        return "retry"


def webhook_deliveries_due(*, limit: int = 500) -> list[int]:
    """Ids of pending deliveries whose attempt is due and that no worker holds: a range scan of the partial
    index on next_attempt_at (pending rows only), oldest first."""
    return list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=Now())
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=Now()))
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
