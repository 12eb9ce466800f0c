"""Writes about campaigns, and the one sender of marketing mail (`delivery_dispatch_batch`).

Every path that hands a campaign message to the mail backend goes through `delivery_dispatch_batch`, which
claims deliveries under a lease (a short transaction of its own), then in one transaction locks them, locks their
covering authorizations, re-checks coverage at the database's clock, sends through `campaigns.transport`, and
records each outcome (DESIGN.md, ADR 0001, R-SEND-COVERED, R-SEND-EVIDENCE).
"""
import logging
import smtplib
import time
from collections import defaultdict
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Case, DateTimeField, Exists, ExpressionWrapper, F, OuterRef, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from audit.services import SYSTEM, audit_record
from campaigns.messages import AssembledMessage, CampaignRender, message_id_parts
from campaigns.models import Campaign, Delivery
from campaigns.permissions import may_control_sending
from campaigns.scheduling import schedule_time_check, timezone_is_known
from campaigns.segments import segment_patient_ids
from campaigns.selectors import delivery_block_reason_list
from campaigns.transport import WindowClosed, rate_limiter, transport_for_settings
from consent.models import Purpose, Revocation, Suppression
from consent.selectors import (
    authorization_covering_list,
    authorization_gap_list,
    authorization_lock_covering,
    patient_suppression_list,
)
from consent.services import authorization_revoke, suppression_record

logger = logging.getLogger(__name__)

# Patients per INSERT … SELECT statement of a launch (PostgreSQL), and per bulk insert (SQLite).
_LAUNCH_INSERT_BATCH = 10_000
# A paused or cancelled campaign's queued deliveries are not claimed (a batch already claimed finishes).
_NOT_CLAIMABLE = (Campaign.Status.PAUSED, Campaign.Status.CANCELLED)


class TransientSendError(Exception):
    """The mail server could not take more messages now; what was sent is recorded, the rest stays queued."""


class CampaignAlreadyLaunched(ValidationError):
    """A second launch of the same campaign (two clicks, two workers, the scheduler and the button): refused,
    nothing created, nothing sent twice."""


def campaign_create(
    *, actor, name: str, purpose: Purpose, subject: str, body_text: str, template=None, blocks=()
) -> Campaign:
    """A draft. Its content: the subject, the marketer's introduction (`body_text`, plain text with merge fields),
    an approved email template (None: the plain layout) and approved content blocks in order (ADR 0005)."""
    from campaigns.content import CampaignContent
    from campaigns.models import CampaignBlock
    from campaigns.services_content import campaign_content_validate

    blocks = list(blocks)
    campaign = Campaign(
        name=name, purpose=purpose, subject=subject, body_text=body_text, template=template, created_by=actor
    )
    campaign.full_clean()
    campaign_content_validate(
        CampaignContent(purpose=purpose, subject=subject, intro_text=body_text, template=template, blocks=tuple(blocks))
    )
    details = {"purpose": purpose.code}
    if template is not None:
        details["template"] = template.pk
    if blocks:
        details["blocks"] = [block.pk for block in blocks]
    with transaction.atomic():
        campaign.save(force_insert=True)
        CampaignBlock.objects.bulk_create(
            [CampaignBlock(campaign=campaign, block=block, position=index) for index, block in enumerate(blocks)]
        )
        audit_record(
            actor=actor,
            action="campaign.created",
            object_type="campaign",
            object_id=campaign.pk,
            details=details,
        )
    return campaign


@contextmanager
def _campaign_locked(
    campaign_id: int, *, allowed: Collection[str], cannot_be: str, with_purpose: bool = False
) -> Iterator[Campaign]:
    """The frame of a lifecycle step: one durable transaction holding the campaign's row lock, entered only from
    one of the `allowed` statuses; any other raises ValidationError "A <status> campaign cannot be <cannot_be>.".
    The step changes the campaign inside (`_campaign_move`), so the change and its audit row commit together.
    `with_purpose` reads the purpose along, locking the campaign's row only (of self): locking its purpose too
    would serialise every step of every campaign for that purpose."""
    with transaction.atomic(durable=True):
        if with_purpose:
            campaigns = Campaign.objects.select_for_update(of=("self",)).select_related("purpose")
        else:
            campaigns = Campaign.objects.select_for_update()
        campaign = campaigns.get(pk=campaign_id)
        if campaign.status not in allowed:
            raise ValidationError(f"A {campaign.get_status_display().lower()} campaign cannot be {cannot_be}.")
        yield campaign


def _campaign_move(
    campaign: Campaign, *, actor, to: str, action: str, details: dict | None = None, clean: bool = False, **fields
) -> None:
    """Move a locked campaign to status `to`, setting `fields` too, save just those, and audit `action` with
    details {"from": <status before>, "to": <to>, **details}. `clean`: full_clean() before saving."""
    previous = campaign.status
    campaign.status = to
    for name, value in fields.items():
        setattr(campaign, name, value)
    if clean:
        campaign.full_clean()
    campaign.save(update_fields=["status", *fields])
    audit_record(
        actor=actor,
        action=action,
        object_type="campaign",
        object_id=campaign.pk,
        details={"from": previous, "to": to, **(details or {})},
    )


def campaign_submit(*, actor, campaign_id: int) -> Campaign:
    """Submit a draft or rejected campaign for approval, once its content passes campaigns.content's checks:
    merge fields only those the purpose's current form lists (R-SEND-SCOPE), an approved template and approved
    blocks, something to send. A refusal names each problem and is audited (codes and field names only)."""
    from campaigns.content import content_of, content_problems

    refused = []
    with _campaign_locked(
        campaign_id, allowed=(Campaign.Status.DRAFT, Campaign.Status.REJECTED), cannot_be="submitted", with_purpose=True
    ) as campaign:
        refused = content_problems(content_of(campaign))
        if refused:
            audit_record(
                actor=actor,
                action="campaign.submit_refused",
                object_type="campaign",
                object_id=campaign.pk,
                details={
                    "problems": sorted({problem.code for problem in refused}),
                    "fields": sorted({name for problem in refused for name in problem.fields}),
                },
            )
        else:
            _campaign_move(campaign, actor=actor, to=Campaign.Status.SUBMITTED, action="campaign.submitted")
    if refused:  # raised after the commit, so that the refusal stays on the record
        raise ValidationError([problem.message for problem in refused], code="content")
    return campaign


def _controller_check(actor) -> None:
    """Scheduling, launching by hand, pausing, resuming and cancelling: compliance officers and administrators."""
    if not may_control_sending(actor):
        raise PermissionDenied("Only a compliance officer or an administrator may do that.")


def campaign_approve(*, actor, campaign_id: int) -> Campaign:
    """Approve a submitted campaign and record who approved it and when. The approver is never the author: an
    author's attempt is refused and the refusal stays on the audit trail (maker-checker, issue 11)."""
    with _campaign_locked(campaign_id, allowed=(Campaign.Status.SUBMITTED,), cannot_be="approved") as campaign:
        refused = campaign.created_by_id == actor.pk
        if refused:
            audit_record(
                actor=actor,
                action="campaign.approve_refused",
                object_type="campaign",
                object_id=campaign.pk,
                details={"reason": "author"},
            )
        else:
            _campaign_move(
                campaign,
                actor=actor,
                to=Campaign.Status.APPROVED,
                action="campaign.approved",
                approved_by=actor,
                approved_at=timezone.now(),
            )
    if refused:  # raised after the commit, so that the refusal stays on the record
        raise PermissionDenied("A campaign's author cannot approve it.")
    return campaign


def campaign_schedule(*, actor, campaign_id: int, send_at: datetime, timezone_name: str) -> Campaign:
    """Schedule an approved campaign (or move a scheduled one) to `send_at`, an aware instant in the future,
    entered in `timezone_name` (kept to show the time back as it was entered). The scheduler launches it then
    (campaigns.tasks.campaign_launch_due_task)."""
    _controller_check(actor)
    if send_at.tzinfo is None:
        raise ValueError("send_at must be an aware datetime")
    if not timezone_is_known(timezone_name):
        raise ValidationError("Choose a time zone from the list.")
    schedule_time_check(send_at)
    scheduled_for = send_at.astimezone(UTC)
    with _campaign_locked(
        campaign_id, allowed=(Campaign.Status.APPROVED, Campaign.Status.SCHEDULED), cannot_be="scheduled"
    ) as campaign:
        _campaign_move(
            campaign,
            actor=actor,
            to=Campaign.Status.SCHEDULED,
            action="campaign.scheduled",
            details={"scheduled_for": scheduled_for.strftime("%Y-%m-%dT%H:%M:%SZ"), "timezone": timezone_name},
            scheduled_for=scheduled_for,
            schedule_timezone=timezone_name,
        )
    return campaign


def campaign_launch(*, actor, campaign_id: int) -> Campaign:
    """Materialise one delivery per patient in the audience and wake the workers.

    `actor` is the staff member who pressed "Send now", or None for the scheduler at the campaign's time.
    Patients without a covering authorization, or whose address is suppressed, get a delivery that is
    blocked from the start with its reason, so the report shows the whole audience. This check is advisory:
    the sender checks again.

    Launching twice is impossible: the status check is made under the campaign's row lock, so of two
    concurrent launches (two clicks, two workers, the scheduler and the button) the second waits for the
    first to commit, then finds the campaign launched and raises CampaignAlreadyLaunched, having created
    nothing; the unique (campaign, patient) constraint backs it.
    """
    if actor is not None:
        _controller_check(actor)
    with transaction.atomic(durable=True):
        # The campaign's row only (of self): locking its purpose too would serialise every launch for a purpose.
        campaign = Campaign.objects.select_for_update(of=("self",)).select_related("purpose").get(pk=campaign_id)
        if campaign.launched_at is not None:
            raise CampaignAlreadyLaunched(
                f"A {campaign.get_status_display().lower()} campaign cannot be launched: it was launched "
                "already, and nothing is sent twice."
            )
        if campaign.status not in (Campaign.Status.APPROVED, Campaign.Status.SCHEDULED):
            raise ValidationError(f"A {campaign.get_status_display().lower()} campaign cannot be launched.")
        # Checked again at launch: a block retired or a form version that dropped a merge field since the
        # approval (R-SEND-SCOPE) stops the launch with the reason, rather than every batch failing to render.
        from campaigns.content import content_of, content_problems

        refused = content_problems(content_of(campaign))
        if refused:
            raise ValidationError([ValidationError(problem.message, code=problem.code) for problem in refused])
        if connection.vendor == "postgresql":
            audience, queued, blocked_counts = _deliveries_materialise_postgresql(campaign=campaign)
        else:
            audience, queued, blocked_counts = _deliveries_materialise_python(campaign=campaign)
        campaign.status = Campaign.Status.SENDING
        campaign.launched_at = timezone.now()
        campaign.save(update_fields=["status", "launched_at"])
        audit_record(
            actor=actor,
            action="campaign.launched",
            object_type="campaign",
            object_id=campaign.pk,
            details={"audience": audience, "queued": queued, "blocked": blocked_counts},
        )
        transaction.on_commit(lambda: _wake_dispatch(campaign.pk))
    return campaign


def campaign_launch_refuse(*, campaign_id: int, codes: list[str]) -> None:
    """The scheduler could not launch a scheduled campaign (its content no longer passes the checks: a retired
    block, a merge field its purpose's current form dropped). It goes back to draft, so it leaves the schedule
    and its author sees why on the editor; audited with the problem codes."""
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != Campaign.Status.SCHEDULED:
            return
        _campaign_move(
            campaign,
            actor=None,
            to=Campaign.Status.DRAFT,
            action="campaign.launch_refused",
            details={"codes": sorted(set(codes))[:10]},
        )
    logger.warning("scheduled campaign %s not launched: %s", campaign_id, ",".join(sorted(set(codes))))


def _deliveries_materialise_python(*, campaign: Campaign) -> tuple[int, int, dict[str, int]]:
    """The launch on SQLite (the demo): the audience's ids in Python, reasons for the uncovered, bulk insert."""
    # The campaign's segment (every patient without one), decided now: later joiners are not added.
    audience = list(segment_patient_ids(segment_id=campaign.segment_id).values_list("id", flat=True))
    gaps = delivery_block_reason_list(purpose_id=campaign.purpose_id, patient_ids=audience)
    rows = [
        Delivery(campaign_id=campaign.pk, patient_id=patient_id)
        if patient_id not in gaps
        else Delivery(
            campaign_id=campaign.pk,
            patient_id=patient_id,
            status=Delivery.Status.BLOCKED,
            block_reason=gaps[patient_id],
        )
        for patient_id in audience
    ]
    Delivery.objects.bulk_create(rows, batch_size=_LAUNCH_INSERT_BATCH)
    blocked_counts: dict[str, int] = defaultdict(int)
    for reason in gaps.values():
        blocked_counts[reason] += 1
    return len(audience), len(audience) - len(gaps), dict(blocked_counts)


# Columns an INSERT … SELECT of deliveries fills with the model's defaults (every one but these).
_LAUNCH_SET_COLUMNS = {"id", "campaign", "patient", "status", "block_reason", "created_at"}


def _deliveries_materialise_postgresql(*, campaign: Campaign) -> tuple[int, int, dict[str, int]]:
    """The launch on PostgreSQL (DESIGN.md, the send pipeline, step 1): `INSERT … SELECT` from the campaign's
    compiled segment query, in batches of patients (keyset on the primary key), inside the launch's transaction.

    Per batch of `_LAUNCH_INSERT_BATCH` patients of the segment:
    1. the batch's last patient id (the segment query, `id > previous`, ordered, limited);
    2. the patients of the batch that would not be sent to: not covered by THE predicate
       (consent.selectors.authorization_covering_list, as a correlated EXISTS) or with a suppressed address;
    3. their reasons from `delivery_block_reason_list` — consent's own account of why, the function the
       screens use — usually a short list;
    4. one `INSERT … SELECT` of the batch's patients from the segment query, left-joined with those reasons: a
       patient with a reason is created blocked with it, every other one queued; in patient order, so delivery
       ids follow patient ids whatever join the planner picks (reports list deliveries by id).
    Only the uncovered patients' ids and reasons travel through Python; the queued rows never do.
    """
    audience = segment_patient_ids(segment_id=campaign.segment_id)  # values("id"), ordered by id
    table = connection.ops.quote_name(Delivery._meta.db_table)
    defaults = [field for field in Delivery._meta.concrete_fields if field.name not in _LAUNCH_SET_COLUMNS]
    default_columns = "".join(f", {connection.ops.quote_name(field.column)}" for field in defaults)
    default_values = [field.get_db_prep_save(field.get_default(), connection) for field in defaults]
    default_placeholders = ", %s" * len(defaults)
    total = queued = 0
    blocked_counts: dict[str, int] = defaultdict(int)
    last = 0
    with connection.cursor() as cursor:
        while True:
            bound_sql, bound_params = audience.filter(id__gt=last)[:_LAUNCH_INSERT_BATCH].query.sql_with_params()
            cursor.execute(f"SELECT max(b.id) FROM ({bound_sql}) AS b", bound_params)
            (batch_last,) = cursor.fetchone()
            if batch_last is None:
                break
            batch = audience.filter(id__gt=last, id__lte=batch_last)
            # The id range repeated inside the subquery changes nothing logically; it keeps the subquery's work
            # to this batch's authorizations whichever plan PostgreSQL picks (a hashed subplan would otherwise
            # read every authorization for the purpose once per batch).
            covering = authorization_covering_list(purpose_id=campaign.purpose_id).filter(
                patient_id=OuterRef("id"), patient_id__gt=last, patient_id__lte=batch_last
            )
            suppressed = Suppression.objects.filter(email_digest=OuterRef("email_digest"))
            uncovered = list(
                batch.filter(~Exists(covering) | Exists(suppressed)).values_list("id", flat=True)
            )
            reasons = delivery_block_reason_list(purpose_id=campaign.purpose_id, patient_ids=uncovered) if uncovered else {}
            batch_sql, batch_params = batch.query.sql_with_params()
            cursor.execute(
                f"""
                WITH inserted AS (
                    INSERT INTO {table} (campaign_id, patient_id, status, block_reason, created_at{default_columns})
                    SELECT %s, b.id,
                           CASE WHEN r.reason IS NULL THEN %s ELSE %s END,
                           coalesce(r.reason, ''),
                           NOW(){default_placeholders}
                      FROM ({batch_sql}) AS b
                      LEFT JOIN unnest(%s::bigint[], %s::text[]) AS r(patient_id, reason) ON r.patient_id = b.id
                     ORDER BY b.id
                    RETURNING status, block_reason
                )
                SELECT status, block_reason, count(*) FROM inserted GROUP BY status, block_reason
                """,
                [
                    campaign.pk,
                    Delivery.Status.QUEUED,
                    Delivery.Status.BLOCKED,
                    *default_values,
                    *batch_params,
                    list(reasons),
                    list(reasons.values()),
                ],
            )
            for status, reason, n in cursor.fetchall():
                total += n
                if status == Delivery.Status.QUEUED:
                    queued += n
                else:
                    blocked_counts[reason] += n
            last = batch_last
    return total, queued, dict(blocked_counts)


def campaign_pause(*, actor, campaign_id: int) -> Campaign:
    """Pause a sending campaign: workers claim no more of its deliveries (a batch already claimed finishes and
    is recorded). A scheduled campaign can be paused too: the scheduler then leaves it alone until resumed."""
    _controller_check(actor)
    with _campaign_locked(
        campaign_id, allowed=(Campaign.Status.SENDING, Campaign.Status.SCHEDULED), cannot_be="paused"
    ) as campaign:
        _campaign_move(campaign, actor=actor, to=Campaign.Status.PAUSED, action="campaign.paused")
    return campaign


def campaign_resume(*, actor, campaign_id: int) -> Campaign:
    """Resume a paused campaign: sending again (the workers are woken) if it had been launched, else scheduled
    again (and launched by the scheduler at once if its time has passed meanwhile)."""
    _controller_check(actor)
    with _campaign_locked(campaign_id, allowed=(Campaign.Status.PAUSED,), cannot_be="resumed") as campaign:
        to = Campaign.Status.SENDING if campaign.launched_at else Campaign.Status.SCHEDULED
        _campaign_move(campaign, actor=actor, to=to, action="campaign.resumed")
        if campaign.status == Campaign.Status.SENDING:
            transaction.on_commit(lambda: _wake_dispatch(campaign.pk))
    return campaign


CANCELLABLE = {Campaign.Status.APPROVED, Campaign.Status.SCHEDULED, Campaign.Status.SENDING, Campaign.Status.PAUSED}


def campaign_cancel(*, actor, campaign_id: int) -> Campaign:
    """Cancel a campaign before or while it sends. Every delivery still queued becomes blocked with the reason
    `campaign_cancelled` in the same transaction — a terminal state, so no queued delivery is left behind.

    A batch a worker is sending at that moment holds its deliveries' row locks: the cancel waits for it to
    commit, then finds those rows sent and leaves them so (in-flight batches finish). Rows are locked in
    primary-key order, as the sender locks them, so the two cannot deadlock. Claimed-but-not-yet-locked rows
    are blocked here, and the sender, which sends only rows still queued, skips them.
    """
    _controller_check(actor)
    with _campaign_locked(campaign_id, allowed=CANCELLABLE, cannot_be="cancelled") as campaign:
        blocked = _deliveries_cancel(campaign_id=campaign.pk)
        _campaign_move(
            campaign,
            actor=actor,
            to=Campaign.Status.CANCELLED,
            action="campaign.cancelled",
            details={"blocked": blocked},
        )
    return campaign


def _deliveries_cancel(*, campaign_id: int) -> int:
    """Block every queued delivery of a campaign with the reason campaign_cancelled; returns how many.

    A queued delivery still under a claim (its lease set and never released) was in a worker's batch: a worker
    that died after handing the message to the mail server and before recording it leaves exactly that. Such a
    row is marked `possible_duplicate` as well, as the reconciler marks a re-claimed one: "a message may have
    reached the mail server that this row does not record" (DESIGN.md: the delivery says so). A live worker
    between its claim and its send finds the row no longer queued and sends nothing, so the mark can only err
    on the side of saying "may have"."""
    if connection.vendor != "postgresql":  # SQLite: the IMMEDIATE transaction holds the database's write lock
        return Delivery.objects.filter(campaign_id=campaign_id, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.BLOCKED,
            block_reason=Delivery.BlockReason.CAMPAIGN_CANCELLED,
            possible_duplicate=Case(When(lease_expires_at__isnull=False, then=Value(True)), default=F("possible_duplicate")),
            lease_expires_at=None,
        )
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        # The outer `status = queued` is re-checked on a row a sending batch committed meanwhile (READ COMMITTED
        # re-evaluates it on the newest version), so a message sent is never recorded as cancelled.
        cursor.execute(
            f"""
            UPDATE {table} AS d
               SET status = %s, block_reason = %s, lease_expires_at = NULL,
                   possible_duplicate = d.possible_duplicate OR d.lease_expires_at IS NOT NULL
             WHERE d.status = %s
               AND d.id IN (SELECT id FROM {table}
                             WHERE campaign_id = %s AND status = %s
                             ORDER BY id
                               FOR UPDATE)
            """,
            [
                Delivery.Status.BLOCKED,
                Delivery.BlockReason.CAMPAIGN_CANCELLED,
                Delivery.Status.QUEUED,
                campaign_id,
                Delivery.Status.QUEUED,
            ],
        )
        return cursor.rowcount


def _wake_dispatch(campaign_id: int) -> None:
    from campaigns.tasks import campaign_dispatch_task  # tasks import services; this breaks the cycle

    campaign_dispatch_task.delay(campaign_id)


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
            f"""
            UPDATE {table} AS d
               SET lease_expires_at = STATEMENT_TIMESTAMP() + %s * INTERVAL '1 second',
                   attempts = d.attempts + 1,
                   possible_duplicate = d.possible_duplicate OR d.lease_expires_at IS NOT NULL
             WHERE d.id IN (
                   SELECT id FROM {table}
                    WHERE campaign_id = %s AND status = %s
                      AND (lease_expires_at IS NULL OR lease_expires_at <= STATEMENT_TIMESTAMP())
                      AND NOT EXISTS (SELECT 1 FROM {campaigns} AS c WHERE c.id = %s AND c.status = ANY(%s))
                    ORDER BY id
                    LIMIT %s
                      FOR UPDATE SKIP LOCKED)
            RETURNING d.id, d.lease_expires_at
            """,
            [
                settings.HIPAAMAIL_SEND_LEASE_SECONDS,
                campaign_id,
                Delivery.Status.QUEUED,
                campaign_id,
                [status.value for status in _NOT_CLAIMABLE],
                batch_size,
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
            actor_role=SYSTEM,
            action="delivery.batch_dispatched",
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
            (pk, patient_id, address)
            # No SKIP LOCKED here: these rows are ours by lease, and another worker's claim statement may be
            # holding them for an instant (it locks, then finds them leased); wait for it rather than skip.
            for pk, lease, patient_id, address in Delivery.objects.select_for_update(of=("self",))
            .filter(pk__in=list(tokens), status=Delivery.Status.QUEUED)
            .order_by("id")
            .values_list("id", "lease_expires_at", "patient_id", "patient__email")
            if lease == tokens[pk]  # still ours: not re-claimed by another worker after our lease expired
        ]
        if not deliveries:
            return outcome
        lasting = timedelta(seconds=window)
        patient_ids = [patient_id for _, patient_id, _ in deliveries]
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
        for pk, patient_id, _ in deliveries:
            if patient_id not in covered or patient_id in gaps:
                outcome.blocked[pk] = gaps[patient_id]
        sendable = [(pk, covered[patient_id], address) for pk, patient_id, address in deliveries if pk not in outcome.blocked]
        # The window closes `window` seconds after just before the check statement was sent: an upper bound, so
        # a message accepted by then was accepted within the window of the check on any clock.
        deadline = coverage.started + window
        # After this, no new message is started: the locks a revocation waits for are held about this long.
        lock_until = coverage.started + min(settings.HIPAAMAIL_SEND_LOCK_SECONDS, window)
        longest = 0.0  # the longest hand-over of this window so far, in seconds
        for index, (pk, authorization_id, address) in enumerate(sendable):
            before = time.monotonic()
            # Start a message only when twice the longest hand-over so far still fits: the transport's deadline
            # is the hard bound, this keeps it from being hit in the ordinary case.
            if deadline - before < 2 * longest or (index and before >= lock_until):
                outcome.left = [(later, tokens[later]) for later, _, _ in sendable[index:]]
                break
            message = render.assemble(delivery_id=pk, to_address=address)
            try:
                transport.send(message, deadline=deadline)
            except WindowClosed as error:
                # The server had not answered when the window closed: the message may have arrived, so it is
                # queued again marked possible_duplicate and re-checked before a second attempt; the rest go to
                # the next window. A server slower than a whole window gets the retry's back-off instead.
                outcome.released, outcome.in_flight = [pk], [pk]
                outcome.left = [(later, tokens[later]) for later, _, _ in sendable[index + 1 :]]
                if not outcome.sent:
                    outcome.transient = error
                    outcome.released += [later for later, _ in outcome.left]
                    outcome.left = []
                logger.warning("campaign %s: the mail server did not answer within the check-to-send window", campaign.pk)
                break
            except smtplib.SMTPException as error:
                if not _is_recipient_refusal(error):
                    outcome.transient = error
                    outcome.released = [later for later, _, _ in sendable[index:]]
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
                outcome.released = [later for later, _, _ in sendable[index:]]
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
    come back later; the deliveries it did not take are released, queued for the retry.
    A worker killed between the mail server's 250 and the commit leaves its deliveries leased; once the lease
    expires the next dispatch claims them again, sends them again with the same Message-ID, and marks them
    `possible_duplicate`.
    """
    batch_size = batch_size or settings.HIPAAMAIL_SEND_BATCH_SIZE
    window = settings.HIPAAMAIL_SEND_CHECK_WINDOW
    campaign = Campaign.objects.select_related("purpose").get(pk=campaign_id)
    transport = transport_for_settings()  # refuses an insecure configuration before anything is claimed
    limiter = rate_limiter()
    granted, second = limiter.take(batch_size)
    claimed = _deliveries_claim(campaign_id=campaign_id, batch_size=granted)
    limiter.give_back(second, granted - len(claimed))
    if not claimed:
        return 0
    render = CampaignRender(campaign=campaign)  # once per batch: each message is assembled from its parts
    transient: Exception | None = None
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
            if outcome.left == left:  # the window closed before its first message could start: no progress
                _deliveries_release(ids=[pk for pk, _ in left])
                transient = TimeoutError("check-to-send window too short for this database and mail server")
                break
            left, transient = outcome.left, outcome.transient
    finally:
        transport.close()
    if transient is not None:
        logger.warning("campaign %s: mail server deferred the batch (%s)", campaign_id, type(transient).__name__)
        raise TransientSendError(str(type(transient).__name__))
    return len(claimed)


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
        if campaign.deliveries.filter(status=Delivery.Status.QUEUED).exists():
            return False
        campaign.status = Campaign.Status.SENT
        campaign.finished_at = timezone.now()
        campaign.save(update_fields=["status", "finished_at"])
        audit_record(
            actor=None, actor_role=SYSTEM, action="campaign.sent", object_type="campaign", object_id=campaign.pk
        )
    return True



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


def preview_message_send_unchecked(*, message: AssembledMessage) -> None:
    """A test send to a staff member's own address (campaigns.services_content.campaign_test_send): the same
    assembled bytes through the same transport as a patient's message (TLS, DKIM), so what staff see is what
    patients get. It skips the coverage check because no patient is involved: the message goes to the staff
    member's verified address, never a patient's. Raises what the transport raises."""
    transport = transport_for_settings()
    try:
        transport.send(message)
    finally:
        transport.close()
