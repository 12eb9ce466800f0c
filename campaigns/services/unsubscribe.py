"""One-click unsubscribe (R-RFC8058): the delivery's signed token names the patient and purpose; the authorization
for that purpose is revoked at once, audited.

Links that are not ours (forged, cut short, for a delivery that does not exist) are audited as a count per interval
(UNSUBSCRIBE_BAD_TOKEN_INTERVAL seconds, a minute by default), not one row per request: anyone can send those
requests without signing in, and the audit trail is append-only (R-SEC-AUDIT). Each request adds one to the
interval's counter in the cache (an atomic increment: Redis in production, shared by every process); once the
interval has ended, the first flush writes one `unsubscribe.bad_tokens` event with the exact count. A flush runs
at the first bad link of a later interval and every minute from beat (campaigns.periodic), and at most one process
writes each interval (a cache add decides). The count is as durable as the cache: a Redis lost mid-minute loses that minute.
"""
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts.throttle import cache_counters_add
from audit import actions
from audit import context as audit_context
from audit.services import audit_record
from campaigns.models import Delivery
from consent.models import Revocation
from consent.services.authorizations import authorization_revoke

# An interval is written this long after it ends, so a request that read the clock just before the end has
# incremented its counter before the count is read.
_FLUSH_GRACE_SECONDS = 5
# A flush looks back a day (one MGET): an interval no flush reached in a day (beat stopped, no bad link since) is
# not written. Counts and their written marks are kept twice as long.
_LOOKBACK_SECONDS = 24 * 3600
_KEEP_SECONDS = 2 * _LOOKBACK_SECONDS
_PREFIX = "hipaamail:unsubscribe:bad_tokens"


def delivery_unsubscribe(*, delivery_id: int) -> list[Revocation]:
    """One-click unsubscribe (R-RFC8058, R-CANSPAM-OPTOUT): revoke the authorization for the purpose of the
    campaign this delivery belongs to, at once. The consent service audits it; doing it twice is harmless."""
    delivery = Delivery.objects.select_related("campaign").get(pk=delivery_id)
    return authorization_revoke(
        actor=None,
        patient_id=delivery.patient_id,
        purpose_id=delivery.campaign.purpose_id,
        channel=Revocation.Channel.ONE_CLICK,
    )


def delivery_unsubscribe_viewed(*, delivery: Delivery) -> None:
    """The patient opened the link (a GET; HEAD and the POST of one click are not views): audited with the
    delivery's id and the patient's id, nothing else."""
    audit_record(
        actor=None,
        actor_role=actions.PATIENT,
        action=actions.UNSUBSCRIBE_VIEWED,
        object_type="delivery",
        object_id=delivery.pk,
        patient_id=delivery.patient_id,
    )


def _interval() -> int:
    return max(1, settings.HIPAAMAIL_UNSUBSCRIBE_BAD_TOKEN_INTERVAL)


def _count_key(bucket: int) -> str:
    return f"{_PREFIX}:{_interval()}:{bucket}"


def unsubscribe_bad_token_count(*, now: datetime | None = None) -> None:
    """Count one request with a link that is not ours in the current interval (one cache round trip on Redis); the
    first of an interval also writes the intervals that have ended (at most one audit row each, its exact count)."""
    now = now or timezone.now()
    bucket = int(now.timestamp() // _interval())
    (count,) = cache_counters_add([(_count_key(bucket), _KEEP_SECONDS)])
    if count == 1:
        unsubscribe_bad_tokens_flush(now=now)


def unsubscribe_bad_tokens_flush(*, now: datetime | None = None) -> int:
    """Write one `unsubscribe.bad_tokens` audit event for each ended interval of the last day that counted bad links
    and has not been written; returns how many were written. Safe to run anywhere, at any time, in many processes
    at once (a cache add decides which writes an interval). Hosts' clocks must agree within the grace (NTP)."""
    now = now or timezone.now()
    interval = _interval()
    # The first interval not yet closed: it ended less than the grace ago, or has not ended.
    open_bucket = int((now.timestamp() - _FLUSH_GRACE_SECONDS) // interval)
    buckets = range(open_bucket - _LOOKBACK_SECONDS // interval, open_bucket)
    counts = cache.get_many([_count_key(bucket) for bucket in buckets])
    written = 0
    # Not the request's address or id: the event stands for every request of the interval.
    with audit_context.bound(ip=None, request_id=""):
        for bucket in buckets:
            count = counts.get(_count_key(bucket))
            if not count or not cache.add(f"{_count_key(bucket)}:written", 1, timeout=_KEEP_SECONDS):
                continue
            audit_record(
                actor=None,
                actor_role=actions.ANONYMOUS,
                action=actions.UNSUBSCRIBE_BAD_TOKENS,
                object_type="unsubscribe",
                details={
                    "count": int(count),
                    "interval_start": datetime.fromtimestamp(bucket * interval, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "interval_seconds": interval,
                },
            )
            written += 1
    return written
