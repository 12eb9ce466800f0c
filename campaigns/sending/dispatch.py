"""THE sender of marketing mail (`delivery_dispatch_batch`): claim queued deliveries under a lease, then in windows
of at most SEND_CHECK_WINDOW lock them, lock their covering authorizations, re-check coverage at the database's
clock, send through campaigns.sending.transport, record each outcome and audit the window (DESIGN.md, ADR 0001,
ADR 0010, R-SEND-COVERED, R-SEND-EVIDENCE). Nothing else hands a campaign message to a mail server."""
import logging
import smtplib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, DateTimeField, ExpressionWrapper, F, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from audit import actions
from audit.services import audit_record
from campaigns import notices
from campaigns.content import MERGE_FIELDS, SYNTHETIC_PATIENT, CampaignContent
from campaigns.models import Campaign, Delivery
from campaigns.sending.messages import AssembledMessage, CampaignRender, message_id_for_test, message_id_parts
from campaigns.sending.transport import WindowClosed, rate_limiter, transport_for_settings
from consent.models import Suppression
from consent.selectors.coverage import authorization_gap_list, authorization_lock_covering, patient_suppression_list
from consent.services.suppressions import suppression_record
from observability import metrics

logger = logging.getLogger(__name__)


# A paused or cancelled campaign's queued deliveries are not claimed (a batch already claimed finishes).
_NOT_CLAIMABLE = (Campaign.Status.PAUSED, Campaign.Status.CANCELLED)


class TransientSendError(Exception):
    """The mail server could not take more messages now; what was sent is recorded, the rest stays queued.

    `progressed`: the server took (or refused for good) at least one message of this batch before it deferred
    the rest: it ended a session (421 after a session's limit, as Amazon SES does) or deferred one message (a
    451), and a new connection can go on at once. False: the batch made no progress at all, so the caller
    backs off (campaigns.tasks.campaign_dispatch_task)."""

    def __init__(self, message: str = "", *, progressed: bool = False):
        super().__init__(message)
        self.progressed = progressed


def _is_recipient_refusal(error: smtplib.SMTPException) -> bool:
    """A permanent refusal of this one message (5xx to RCPT TO or DATA). Everything else — a refused
    greeting, login or sender, a 4xx, a dropped connection — is the server's state, not the recipient's:
    the batch stops and the rest stays queued for a retry."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(error, smtplib.SMTPDataError):
        return 500 <= error.smtp_code < 600
    return False


def _refusal_code(error: smtplib.SMTPException) -> int | str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return next(iter(error.recipients.values()))[0]
    return getattr(error, "smtp_code", "") or "refused"


def _deliveries_claim(*, campaign_id: int, batch_size: int) -> list[tuple[int, object]]:
    """Claim up to `batch_size` queued deliveries under a lease, in one short committed transaction.

    A delivery is claimable when its lease is null (never claimed, or released cleanly) or expired (its worker
    died or hung). Claiming sets the lease, counts the attempt, and marks `possible_duplicate` when the previous
    claim ended without a release: that worker may have handed the message to the mail server before dying.
    Returns (delivery id, lease token) pairs; the token is the lease's exact value, which the sending
    transaction requires, so a delivery re-claimed by another worker after our lease expired is not ours.
    Nothing is claimed for a paused or cancelled campaign: pausing stops the claims, and a batch claimed before
    the pause committed finishes.
    """
    if connection.vendor == "postgresql":
        return _deliveries_claim_postgresql(campaign_id=campaign_id, batch_size=batch_size)
    lease = ExpressionWrapper(
        Now() + timedelta(seconds=settings.HIPAAMAIL_SEND_LEASE_SECONDS), output_field=DateTimeField()
    )
    with transaction.atomic(durable=True):
        # SQLite: the IMMEDIATE transaction holds the write lock, so a pause commits either before or after.
        if Campaign.objects.filter(pk=campaign_id, status__in=_NOT_CLAIMABLE).exists():
            return []
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(campaign_id=campaign_id, status=Delivery.Status.QUEUED)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=Now()))
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return []
        Delivery.objects.filter(pk__in=ids).update(
            lease_expires_at=lease,
            attempts=F("attempts") + 1,
            possible_duplicate=Case(When(lease_expires_at__isnull=False, then=Value(True)), default=F("possible_duplicate")),
        )
        return list(Delivery.objects.filter(pk__in=ids).order_by("id").values_list("id", "lease_expires_at"))


def _deliveries_claim_postgresql(*, campaign_id: int, batch_size: int) -> list[tuple[int, object]]:
    """`_deliveries_claim` in one statement (the queue idiom: UPDATE of a SKIP LOCKED sub-select, RETURNING).

    The campaign's status is read in the statement's snapshot, without a lock: a pause that commits while this
    statement runs lets this one batch through (it is in flight), and every later claim sees the pause."""
    table = connection.ops.quote_name(Delivery._meta.db_table)
    campaigns = connection.ops.quote_name(Campaign._meta.db_table)
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute(
            # The sub-select is a MATERIALIZED CTE so that it runs exactly once whatever the planner's statistics:
            # as `WHERE d.id IN (sub-select)`, a plan that rescans it for each row of the table (seen with 50,000
            # fresh deliveries, campaigns/tests/test_multihost.py) costs a claim minutes.
            f"""
            WITH claimable AS MATERIALIZED (
                 SELECT id FROM {table}
                  WHERE campaign_id = %s AND status = %s
                    AND (lease_expires_at IS NULL OR lease_expires_at <= STATEMENT_TIMESTAMP())
                    AND NOT EXISTS (SELECT 1 FROM {campaigns} AS c WHERE c.id = %s AND c.status = ANY(%s))
                  ORDER BY id
                  LIMIT %s
                    FOR UPDATE SKIP LOCKED)
            UPDATE {table} AS d
               SET lease_expires_at = STATEMENT_TIMESTAMP() + %s * INTERVAL '1 second',
                   attempts = d.attempts + 1,
                   possible_duplicate = d.possible_duplicate OR d.lease_expires_at IS NOT NULL
              FROM claimable
             WHERE d.id = claimable.id
            RETURNING d.id, d.lease_expires_at
            """,
            [
                campaign_id,
                Delivery.Status.QUEUED,
                campaign_id,
                [status.value for status in _NOT_CLAIMABLE],
                batch_size,
                settings.HIPAAMAIL_SEND_LEASE_SECONDS,
            ],
        )
        return sorted(cursor.fetchall())


def batch_event_time(instant: datetime) -> str:
    """An instant as the batch event records it: UTC, microseconds, Z (exactly the stored value). The delivery
    verification compares stored times in this form (campaigns.delivery_verification)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _WindowOutcome:
    """What one check-to-send window decided. `sent`: delivery id -> (authorization id, sent_at);
    `failed`: delivery id -> SMTP reply code; `released`: never handed to the server, queued again;
    `in_flight`: released, but the connection failed while this message was being handed over, so it may
    have reached the server (the delivery says so); `left`: still ours, for the next window."""

    checked_at: datetime | None = None
    sent: dict[int, tuple[int, datetime]] = field(default_factory=dict)
    blocked: dict[int, str] = field(default_factory=dict)
    failed: dict[int, int | str] = field(default_factory=dict)
    released: list[int] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    left: list[tuple[int, object]] = field(default_factory=list)
    transient: Exception | None = None


def _deliveries_record(*, outcome: _WindowOutcome) -> None:
    """Write a window's outcomes, a few statements for the whole window, and end the leases.

    Each sent delivery gets its own evidence: the window's `checked_at` (the database's clock at the check) and
    its own `sent_at` (when the server accepted it, on the same clock); written inside the transaction that
    still holds the authorizations FOR SHARE, so before any revocation of them can commit."""
    sent = outcome.sent
    if sent:
        id_before, id_after = message_id_parts()  # the same Message-ID as message_id_for, computed in SQL
        table = connection.ops.quote_name(Delivery._meta.db_table)
        if connection.vendor == "postgresql":
            # One statement for the whole window; Django's CASE WHEN per row costs more CPU than the SMTP
            # conversation (measured: bench/send_campaign.py).
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""
                    UPDATE {table} AS d
                       SET status = %s, authorization_id = v.authorization_id,
                           message_id = %s || d.id::text || %s,
                           checked_at = %s, sent_at = v.sent_at, lease_expires_at = NULL
                      FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[]) AS v(id, authorization_id, sent_at)
                     WHERE d.id = v.id
                    """,
                    [
                        Delivery.Status.SENT,
                        id_before,
                        id_after,
                        outcome.checked_at,
                        list(sent),
                        [authorization_id for authorization_id, _ in sent.values()],
                        [sent_at for _, sent_at in sent.values()],
                    ],
                )
        else:
            # SQLite (the demo): row by row; the check constraint wants the evidence with the status.
            for pk, (authorization_id, sent_at) in sent.items():
                Delivery.objects.filter(pk=pk).update(
                    status=Delivery.Status.SENT,
                    authorization_id=authorization_id,
                    message_id=f"{id_before}{pk}{id_after}",
                    checked_at=outcome.checked_at,
                    sent_at=sent_at,
                    lease_expires_at=None,
                )
    by_reason: dict[str, list[int]] = defaultdict(list)
    for pk, reason in outcome.blocked.items():
        by_reason[reason].append(pk)
    for reason, pks in by_reason.items():
        Delivery.objects.filter(pk__in=pks).update(
            status=Delivery.Status.BLOCKED, block_reason=reason, lease_expires_at=None
        )
    by_code: dict[int | str, list[int]] = defaultdict(list)
    for pk, code in outcome.failed.items():
        by_code[code].append(pk)
    for code, pks in by_code.items():
        # Every failure recorded here is the server refusing the recipient (5xx): a hard bounce, counted as one.
        Delivery.objects.filter(pk__in=pks).update(
            status=Delivery.Status.FAILED,
            error=f"smtp {code}",
            smtp_code=code if isinstance(code, int) else None,
            lease_expires_at=None,
            bounce_type="hard",
            bounced_at=Now(),
        )
    if outcome.released:
        # Never handed to the server (the batch stopped before them): queued again at once, no duplicate risk,
        # but for the one being handed over when the connection failed.
        Delivery.objects.filter(pk__in=outcome.released).update(
            lease_expires_at=None,
            possible_duplicate=Case(When(pk__in=outcome.in_flight, then=Value(True)), default=F("possible_duplicate")),
        )


def _window_audit(*, campaign_id: int, outcome: _WindowOutcome) -> None:
    """One audit event per window (DESIGN.md: one per send batch): delivery ids by outcome, and for each sent
    delivery its authorization id and send time, in the order of "sent" (ids and times only), so that
    audit_verify can compare every delivery row with its sealed record."""
    details: dict[str, object] = {}
    if outcome.sent:
        ordered = sorted(outcome.sent.items())
        details["checked_at"] = batch_event_time(outcome.checked_at)
        details["sent"] = [pk for pk, _ in ordered]
        details["sent_authorization"] = [authorization_id for _, (authorization_id, _) in ordered]
        details["sent_at"] = [batch_event_time(sent_at) for _, (_, sent_at) in ordered]
    blocked: dict[str, list[int]] = defaultdict(list)
    for pk, reason in outcome.blocked.items():
        blocked[f"blocked_{reason}"].append(pk)
    details |= {key: sorted(pks) for key, pks in blocked.items()}
    if outcome.failed:
        details["failed"] = sorted(outcome.failed)
    if details:
        audit_record(
            actor=None,
            actor_role=actions.SYSTEM,
            action=actions.DELIVERY_BATCH_DISPATCHED,
            object_type="campaign",
            object_id=campaign_id,
            details=details,
        )


def _dispatch_window(
    *, campaign: Campaign, claimed: list[tuple[int, object]], transport, render: CampaignRender, window: float
) -> _WindowOutcome:
    """One check-to-send window, in one transaction (ADR 0010).

    Lock the claimed deliveries still ours, lock their covering authorizations FOR SHARE and check coverage
    through the end of the window (`authorization_lock_covering(lasting=window)`), then hand covered messages
    to the server one by one while the window lasts: every exchange is bounded by the window's close (the
    transport's deadline; WindowClosed when the server has not answered by then), and a message is started only
    while twice the longest hand-over seen so far still fits, and not once the locks have been held for
    SEND_LOCK_SECONDS. What the window had no time for is `left` for the next one (re-locked, re-checked).
    Record every outcome, audit, commit: a revocation waits at most about SEND_LOCK_SECONDS plus one hand-over."""
    outcome = _WindowOutcome()
    with transaction.atomic(durable=True):
        tokens = dict(claimed)
        deliveries = [
            (pk, patient_id, address, language)
            # No SKIP LOCKED here: these rows are ours by lease, and another worker's claim statement may be
            # holding them for an instant (it locks, then finds them leased); wait for it rather than skip.
            for pk, lease, patient_id, address, language in Delivery.objects.select_for_update(of=("self",))
            .filter(pk__in=list(tokens), status=Delivery.Status.QUEUED)
            .order_by("id")
            .values_list("id", "lease_expires_at", "patient_id", "patient__email", "patient__language")
            if lease == tokens[pk]  # still ours: not re-claimed by another worker after our lease expired
        ]
        if not deliveries:
            return outcome
        lasting = timedelta(seconds=window)
        patient_ids = [patient_id for _, patient_id, _, _ in deliveries]
        coverage = authorization_lock_covering(purpose_id=campaign.purpose_id, patient_ids=patient_ids, lasting=lasting)
        outcome.checked_at = coverage.checked_at
        covered = coverage.by_patient
        uncovered = [pid for pid in patient_ids if pid not in covered]
        gaps = (
            authorization_gap_list(purpose_id=campaign.purpose_id, patient_ids=uncovered, lasting=lasting)
            if uncovered
            else {}
        )
        # A suppressed address (hard bounce, complaint) gets nothing even when covered (R-BOUNCE-SUPPRESS).
        gaps |= patient_suppression_list(patient_ids=[pid for pid in patient_ids if pid in covered])
        for pk, patient_id, _, _ in deliveries:
            if patient_id not in covered or patient_id in gaps:
                outcome.blocked[pk] = gaps[patient_id]
        sendable = [
            (pk, covered[patient_id], address, language)
            for pk, patient_id, address, language in deliveries
            if pk not in outcome.blocked
        ]
        # The window closes `window` seconds after just before the check statement was sent: an upper bound, so
        # a message accepted by then was accepted within the window of the check on any clock.
        deadline = coverage.started + window
        # After this, no new message is started: the locks a revocation waits for are held about this long.
        lock_until = coverage.started + min(settings.HIPAAMAIL_SEND_LOCK_SECONDS, window)
        longest = 0.0  # the longest hand-over of this window so far, in seconds
        for index, (pk, authorization_id, address, language) in enumerate(sendable):
            before = time.monotonic()
            # Start a message only when twice the longest hand-over so far still fits: the transport's deadline
            # is the hard bound, this keeps it from being hit in the ordinary case.
            if deadline - before < 2 * longest or (index and before >= lock_until):
                outcome.left = [(later, tokens[later]) for later, _, _, _ in sendable[index:]]
                break
            message = render.assemble(delivery_id=pk, to_address=address, language=language)
            try:
                transport.send(message, deadline=deadline)
            except WindowClosed as error:
                # The server had not answered when the window closed: the message may have arrived, so it is
                # queued again marked possible_duplicate and re-checked before a second attempt; the rest go to
                # the next window. A server slower than a whole window gets the retry's back-off instead.
                outcome.released, outcome.in_flight = [pk], [pk]
                outcome.left = [(later, tokens[later]) for later, _, _, _ in sendable[index + 1 :]]
                if not outcome.sent:
                    outcome.transient = error
                    outcome.released += [later for later, _ in outcome.left]
                    outcome.left = []
                logger.warning("campaign %s: the mail server did not answer within the check-to-send window", campaign.pk)
                break
            except smtplib.SMTPException as error:
                if not _is_recipient_refusal(error):
                    outcome.transient = error
                    outcome.released = [later for later, _, _, _ in sendable[index:]]
                    if isinstance(error, smtplib.SMTPServerDisconnected):
                        outcome.in_flight = [pk]
                    break
                code = _refusal_code(error)
                outcome.failed[pk] = code
                # A hard bounce suppresses the address for every later marketing message.
                suppression_record(
                    actor=None, email=address, reason=Suppression.Reason.HARD_BOUNCE, smtp_code=str(code)
                )
                continue
            except OSError as error:  # connection refused or dropped: the server is away
                outcome.transient = error
                outcome.released = [later for later, _, _, _ in sendable[index:]]
                outcome.in_flight = [pk]
                break
            accepted = time.monotonic()
            longest = max(longest, accepted - before)
            # The server's 250 on the database's clock: the check's timestamp plus the time elapsed since the
            # check's rows came back, a lower bound of the real time since the check. So sent_at is never later
            # than the acceptance, and always before this transaction's commit and any revocation that waited
            # for it; the window itself is enforced on the upper bound (since `started`), above.
            outcome.sent[pk] = (authorization_id, coverage.checked_at + timedelta(seconds=accepted - coverage.returned))
        _deliveries_record(outcome=outcome)
        _window_audit(campaign_id=campaign.pk, outcome=outcome)
    return outcome


def delivery_dispatch_batch(*, campaign_id: int, batch_size: int | None = None) -> int:
    """THE sender. Take rate-limit tokens, claim up to that many queued deliveries, then check and send them
    in check-to-send windows of at most `SEND_CHECK_WINDOW` seconds (ADR 0010).

    1. Rate limiting first (`RateLimiter.take`): it may wait, and waits here, outside any transaction and with
       no lock held; the batch claims only as many deliveries as it was granted.
    2. Claim under a lease (`_deliveries_claim`, its own short transaction: workers never wait for each other).
    3. Connect to the mail server, so that the connection's set-up is not counted in a window.
    4. Windows (`_dispatch_window`), each one transaction: lock the claimed deliveries (ours by lease), lock
       their covering authorizations FOR SHARE and check coverage at the database's clock through the end of
       the window, hand each covered message to the server while the window lasts, record every outcome
       with its own times (`checked_at`, `sent_at`), audit, commit. Lock order everywhere: deliveries, then
       authorizations, then the audit chain (DESIGN.md, ADR 0001). What a window had no time for is
       re-locked and re-checked by the next.

    Returns how many deliveries this batch claimed (0 when nothing was left to claim). Raises
    TransientSendError after committing the outcomes recorded so far when the mail server asks us to
    come back later; the deliveries it did not take are released, queued for the retry (at once when the
    server had taken some of this batch: `progressed`).
    A worker killed between the mail server's 250 and the commit leaves its deliveries leased; once the lease
    expires the next dispatch claims them again, sends them again with the same Message-ID, and marks them
    `possible_duplicate`.
    """
    batch_size = batch_size or settings.HIPAAMAIL_SEND_BATCH_SIZE
    window = settings.HIPAAMAIL_SEND_CHECK_WINDOW
    campaign = Campaign.objects.select_related("purpose").get(pk=campaign_id)
    transport = transport_for_settings()  # refuses an insecure configuration before anything is claimed
    limiter = rate_limiter()
    asked = time.monotonic()
    granted, second = limiter.take(batch_size)
    metrics.send_rate_limit_took(seconds=time.monotonic() - asked)
    claimed = _deliveries_claim(campaign_id=campaign_id, batch_size=granted)
    limiter.give_back(second, granted - len(claimed))
    if not claimed:
        return 0
    started = time.monotonic()
    render = CampaignRender(campaign=campaign)  # once per batch: each message is assembled from its parts
    transient: Exception | None = None
    progressed = False  # the server took, or refused for good, a message of this batch
    try:
        left = claimed
        while left and transient is None:
            try:
                transport.open()
            except (smtplib.SMTPException, OSError) as error:  # the server is away: nothing was handed over
                _deliveries_release(ids=[pk for pk, _ in left])
                transient = error
                break
            outcome = _dispatch_window(campaign=campaign, claimed=left, transport=transport, render=render, window=window)
            _window_count(outcome)  # committed: what the window recorded is what the metrics say
            progressed = progressed or bool(outcome.sent or outcome.failed)
            if outcome.left == left:  # the window closed before its first message could start: no progress
                _deliveries_release(ids=[pk for pk, _ in left])
                transient = TimeoutError("check-to-send window too short for this database and mail server")
                break
            left, transient = outcome.left, outcome.transient
    finally:
        transport.close()
        metrics.send_batch_observe(seconds=time.monotonic() - started)
    if transient is not None:
        logger.warning("campaign %s: mail server deferred the batch (%s)", campaign_id, type(transient).__name__)
        raise TransientSendError(str(type(transient).__name__), progressed=progressed)
    return len(claimed)


def _window_count(outcome: _WindowOutcome) -> None:
    """A committed window in the metrics: each sent message's check-to-send time from its own evidence (sent_at
    minus checked_at, as recorded), the blocked by reason, the refused (hard bounces)."""
    metrics.send_window_count(
        checked_to_sent=[(sent_at - outcome.checked_at).total_seconds() for _, sent_at in outcome.sent.values()],
        blocked_reasons=outcome.blocked.values(),
        refused=len(outcome.failed),
    )


def _deliveries_release(*, ids: list[int]) -> None:
    """End the leases of claimed deliveries that were never handed to the server: queued again at once."""
    with transaction.atomic(durable=True):
        Delivery.objects.filter(pk__in=ids, status=Delivery.Status.QUEUED).update(lease_expires_at=None)


def campaign_finish_if_done(*, campaign_id: int) -> bool:
    """Mark a sending campaign sent once no delivery is left queued."""
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != Campaign.Status.SENDING:
            return campaign.status == Campaign.Status.SENT
        if campaign.kind == Campaign.Kind.JOURNEY_STEP:  # open while its journey runs (ADR 0016)
            return False
        if campaign.deliveries.filter(status=Delivery.Status.QUEUED).exists():
            return False
        campaign.status = Campaign.Status.SENT
        campaign.finished_at = timezone.now()
        campaign.save(update_fields=["status", "finished_at"])
        audit_record(
            actor=None, actor_role=actions.SYSTEM, action=actions.CAMPAIGN_SENT,
            object_type="campaign", object_id=campaign.pk
        )
        # Its author is told, in the product and by mail after the commit (issue 17, the review loop).
        notices.campaign_sent_notify(campaign=campaign)
    return True


def preview_message_send_unchecked(*, message: AssembledMessage) -> None:
    """A test send to a staff member's own address (campaigns.services.library.campaign_test_send): the same
    assembled bytes through the same transport as a patient's message (TLS, DKIM), so what staff see is what
    patients get. It skips the coverage check because no patient is involved: the message goes to the staff
    member's verified address, never a patient's. Raises what the transport raises."""
    transport = transport_for_settings()
    try:
        transport.send(message)
    finally:
        transport.close()


def campaign_test_message_send_unchecked(*, campaign: Campaign, content: CampaignContent, to_address: str) -> None:
    """The test send of a campaign (campaigns.services.library.campaign_test_send): its content rendered with the
    synthetic patient (every merge field, made-up values, so the test shows what a patient would see), assembled
    under a test Message-ID the bounce reader never takes for a delivery's, and sent to `to_address`, a staff
    member's own verified address. Raises ContentError if the content does not render, else what the transport
    raises."""
    render = CampaignRender(campaign=campaign, content=content, allowed_fields=MERGE_FIELDS)
    message = render.assemble(
        delivery_id=0, to_address=to_address, merge_values=SYNTHETIC_PATIENT, message_id=message_id_for_test()
    )
    preview_message_send_unchecked(message=message)
