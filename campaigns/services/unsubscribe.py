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
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.throttle import cache_counters_add
from audit import actions
from audit import context as audit_context
from audit.services import audit_record
from campaigns.models import Delivery
from consent.models import Authorization, Revocation
from consent.services.authorizations import authorization_revoke, authorizations_reinstate

# How long after a one-click unsubscribe the patient may undo it from the page that confirmed it (ADR 0027).
UNDO_SECONDS = 15 * 60
_UNDO_SALT = "hipaamail.unsubscribe.undo"

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


def unsubscribe_undo_token(*, delivery_id: int, revocations: list[Revocation]) -> str:
    """A signed, dated token naming the delivery and exactly the authorizations this unsubscribe revoked: what an undo
    may restore, and nothing else. Carried in the form of the confirmation page; it names no person (ids only)."""
    return signing.dumps(
        {"delivery": delivery_id, "authorizations": sorted(r.authorization_id for r in revocations)}, salt=_UNDO_SALT
    )


class UndoRefused(Exception):
    """The undo cannot be done: `reason` is "expired" (too late, or a token that is not ours) or "nothing" (what the
    unsubscribe stopped has ended anyway, or was restored or signed again already)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def unsubscribe_undo_token_fresh(token: str) -> bool:
    """Whether an undo token is ours and still inside UNDO_SECONDS (the undo itself checks everything again)."""
    try:
        signing.loads(token, salt=_UNDO_SALT, max_age=UNDO_SECONDS)
    except signing.BadSignature:  # SignatureExpired is one
        return False
    return True


def delivery_unsubscribe_undo(*, delivery_id: int, token: str, signed_ip: str = "", user_agent: str = "") -> list[int]:
    """Undo a one-click unsubscribe within UNDO_SECONDS (ADR 0027): the authorizations it revoked, and only those, are
    stored again (consent.services.authorizations.authorizations_reinstate) and the undo is audited with their ids.
    Returns the new authorizations' ids; UndoRefused says why nothing was done."""
    try:
        payload = signing.loads(token, salt=_UNDO_SALT, max_age=UNDO_SECONDS)
    except signing.BadSignature:  # SignatureExpired is one
        raise UndoRefused("expired") from None
    if not isinstance(payload, dict) or payload.get("delivery") != delivery_id:
        raise UndoRefused("expired")
    revoked = [item for item in payload.get("authorizations", []) if isinstance(item, int)]
    delivery = Delivery.objects.select_related("campaign").get(pk=delivery_id)
    # Only this delivery's patient and purpose: the token was made for them, and the ids are checked again here.
    revoked = list(
        Authorization.objects.filter(
            pk__in=revoked, patient_id=delivery.patient_id, purpose_id=delivery.campaign.purpose_id
        ).values_list("pk", flat=True)
    )
    with transaction.atomic(durable=True):
        reinstated = authorizations_reinstate(
            revoked_ids=revoked,
            channel_revoked=Revocation.Channel.ONE_CLICK,
            since=timezone.now() - timedelta(seconds=UNDO_SECONDS),
            signed_ip=signed_ip,
            user_agent=user_agent,
        )
        if not reinstated:
            raise UndoRefused("nothing")
        audit_record(
            actor=None,
            actor_role=actions.PATIENT,
            action=actions.UNSUBSCRIBE_UNDONE,
            object_type="delivery",
            object_id=delivery.pk,
            patient_id=delivery.patient_id,
            details={
                "purpose_id": delivery.campaign.purpose_id,
                "reinstated": [{"revoked_id": old, "authorization_id": new} for old, new in sorted(reinstated.items())],
            },
        )
    return sorted(reinstated.values())


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
