"""Writes about campaigns, and the one sender of marketing mail (`delivery_dispatch_batch`).

Every path that hands a campaign message to the mail backend goes through `delivery_dispatch_batch`, which
claims deliveries under a lease (a short transaction of its own), then in one transaction locks them, locks their
covering authorizations, re-checks coverage at the database's clock, sends through `campaigns.transport`, and
records each outcome (DESIGN.md, ADR 0001, R-SEND-COVERED, R-SEND-EVIDENCE).
"""
import logging
import smtplib
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Case, CharField, DateTimeField, ExpressionWrapper, F, Q, Value, When
from django.db.models.functions import Cast, Concat, Now
from django.utils import timezone

from audit.services import SYSTEM, audit_record
from campaigns.messages import CampaignRender, message_id_parts
from campaigns.models import Campaign, Delivery
from campaigns.selectors import delivery_block_reason_list
from campaigns.segments import segment_patient_ids
from campaigns.transport import rate_limiter, transport_for_settings
from consent.models import Purpose, Revocation, Suppression
from consent.selectors import (
    authorization_gap_list,
    authorization_lock_covering,
    patient_suppression_list,
)
from consent.services import authorization_revoke, suppression_record

logger = logging.getLogger(__name__)

_LAUNCH_INSERT_BATCH = 2000


class TransientSendError(Exception):
    """The mail server could not take more messages now; what was sent is recorded, the rest stays queued."""


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


def _campaign_transition(*, actor, campaign_id: int, allowed_from: set[str], to: str, action: str) -> Campaign:
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status not in allowed_from:
            raise ValidationError(f"A {campaign.get_status_display().lower()} campaign cannot be {action}.")
        if to == Campaign.Status.APPROVED and campaign.created_by_id == actor.pk:
            raise PermissionDenied("A campaign's author cannot approve it.")
        previous = campaign.status
        campaign.status = to
        campaign.save(update_fields=["status"])
        audit_record(
            actor=actor,
            action=f"campaign.{action}",
            object_type="campaign",
            object_id=campaign.pk,
            details={"from": previous, "to": to},
        )
    return campaign


def campaign_submit(*, actor, campaign_id: int) -> Campaign:
    """Submit a draft or rejected campaign for approval, once its content passes campaigns.content's checks:
    merge fields only those the purpose's current form lists (R-SEND-SCOPE), an approved template and approved
    blocks, something to send. A refusal names each problem and is audited (codes and field names only)."""
    from campaigns.content import content_of, content_problems

    refused = []
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.select_for_update(of=("self",)).select_related("purpose").get(pk=campaign_id)
        if campaign.status not in (Campaign.Status.DRAFT, Campaign.Status.REJECTED):
            raise ValidationError(f"A {campaign.get_status_display().lower()} campaign cannot be submitted.")
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
            previous = campaign.status
            campaign.status = Campaign.Status.SUBMITTED
            campaign.save(update_fields=["status"])
            audit_record(
                actor=actor,
                action="campaign.submitted",
                object_type="campaign",
                object_id=campaign.pk,
                details={"from": previous, "to": campaign.status},
            )
    if refused:  # raised after the commit, so that the refusal stays on the record
        raise ValidationError([problem.message for problem in refused], code="content")
    return campaign


def campaign_approve(*, actor, campaign_id: int) -> Campaign:
    """Approve a submitted campaign. The approver is never the author."""
    return _campaign_transition(
        actor=actor,
        campaign_id=campaign_id,
        allowed_from={Campaign.Status.SUBMITTED},
        to=Campaign.Status.APPROVED,
        action="approved",
    )


def campaign_launch(*, actor, campaign_id: int) -> Campaign:
    """Materialise one delivery per patient in the audience and wake the workers.

    Patients without a covering authorization, or whose address is suppressed, get a delivery that is
    blocked from the start with its reason, so the report shows the whole audience. This check is advisory: the sender checks again.
    Launching twice is refused by the status check, made under the campaign's row lock.
    """
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.select_for_update().select_related("purpose").get(pk=campaign_id)
        if campaign.status not in (Campaign.Status.APPROVED, Campaign.Status.SCHEDULED):
            raise ValidationError(f"A {campaign.get_status_display().lower()} campaign cannot be launched.")
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
        campaign.status = Campaign.Status.SENDING
        campaign.launched_at = timezone.now()
        campaign.save(update_fields=["status", "launched_at"])
        blocked_counts: dict[str, int] = defaultdict(int)
        for reason in gaps.values():
            blocked_counts[reason] += 1
        audit_record(
            actor=actor,
            action="campaign.launched",
            object_type="campaign",
            object_id=campaign.pk,
            details={"audience": len(audience), "queued": len(audience) - len(gaps), "blocked": blocked_counts},
        )
        transaction.on_commit(lambda: _wake_dispatch(campaign.pk))
    return campaign


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
    """
    if connection.vendor == "postgresql":
        return _deliveries_claim_postgresql(campaign_id=campaign_id, batch_size=batch_size)
    lease = ExpressionWrapper(
        Now() + timedelta(seconds=settings.HIPAAMAIL_SEND_LEASE_SECONDS), output_field=DateTimeField()
    )
    with transaction.atomic(durable=True):
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
    """`_deliveries_claim` in one statement (the queue idiom: UPDATE of a SKIP LOCKED sub-select, RETURNING)."""
    table = connection.ops.quote_name(Delivery._meta.db_table)
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
                    ORDER BY id
                    LIMIT %s
                      FOR UPDATE SKIP LOCKED)
            RETURNING d.id, d.lease_expires_at
            """,
            [settings.HIPAAMAIL_SEND_LEASE_SECONDS, campaign_id, Delivery.Status.QUEUED, batch_size],
        )
        return sorted(cursor.fetchall())


def _deliveries_record(*, sent: dict[int, int], blocked: dict[int, str], failed: dict[int, str], released: list[int]) -> None:
    """Write a batch's outcomes, a few statements for the whole batch, and end the leases.

    `sent`: delivery id -> authorization id; `sent_at` is the database's clock, inside the transaction that
    still holds the authorizations FOR SHARE (so before any revocation of them can commit)."""
    if sent:
        id_before, id_after = message_id_parts()  # the same Message-ID as message_id_for, computed in SQL
        table = connection.ops.quote_name(Delivery._meta.db_table)
        if connection.vendor == "postgresql":
            # One statement for the whole batch; Django's CASE WHEN per row costs more CPU than the SMTP
            # conversation (measured: bench/send_campaign.py). STATEMENT_TIMESTAMP() is Django's Now().
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""
                    UPDATE {table} AS d
                       SET status = %s, authorization_id = v.authorization_id,
                           message_id = %s || d.id::text || %s,
                           sent_at = STATEMENT_TIMESTAMP(), lease_expires_at = NULL
                      FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, authorization_id)
                     WHERE d.id = v.id
                    """,
                    [Delivery.Status.SENT, id_before, id_after, list(sent), list(sent.values())],
                )
        else:
            # The authorization first: the check constraint wants it on a sent row.
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"UPDATE {table} SET authorization_id = %s WHERE id = %s",
                    [(authorization_id, pk) for pk, authorization_id in sent.items()],
                )
            Delivery.objects.filter(pk__in=list(sent)).update(
                status=Delivery.Status.SENT,
                message_id=Concat(Value(id_before), Cast("id", output_field=CharField()), Value(id_after)),
                sent_at=Now(),
                lease_expires_at=None,
            )
    by_reason: dict[str, list[int]] = defaultdict(list)
    for pk, reason in blocked.items():
        by_reason[reason].append(pk)
    for reason, pks in by_reason.items():
        Delivery.objects.filter(pk__in=pks).update(
            status=Delivery.Status.BLOCKED, block_reason=reason, lease_expires_at=None
        )
    by_error: dict[str, list[int]] = defaultdict(list)
    for pk, error in failed.items():
        by_error[error].append(pk)
    for error, pks in by_error.items():
        Delivery.objects.filter(pk__in=pks).update(status=Delivery.Status.FAILED, error=error, lease_expires_at=None)
    if released:
        # Never handed to the server (the batch stopped before them): queued again at once, no duplicate risk.
        Delivery.objects.filter(pk__in=released).update(lease_expires_at=None)


def delivery_dispatch_batch(*, campaign_id: int, batch_size: int | None = None) -> int:
    """THE sender. Claim up to `batch_size` queued deliveries, check consent under lock, send, record.

    1. Claim under a lease (`_deliveries_claim`, its own short transaction: workers never wait for each other).
    2. One transaction: lock the claimed deliveries again (ours by lease), lock their covering authorizations
       FOR SHARE and re-check coverage at the database's clock (`authorization_lock_covering`), render the
       campaign once, send each covered message over one connection, record every outcome, audit, commit.
       Lock order everywhere: deliveries, then authorizations, then the audit chain (DESIGN.md, ADR 0001).

    Returns how many deliveries this batch claimed (0 when nothing was left to claim). Raises
    TransientSendError after committing the outcomes recorded so far when the mail server asks us to
    come back later; the deliveries it did not take are released, queued for the retry.
    A worker killed between the mail server's 250 and the commit leaves its deliveries leased; once the lease
    expires the next dispatch claims them again, sends them again with the same Message-ID, and marks them
    `possible_duplicate`.
    """
    batch_size = batch_size or settings.HIPAAMAIL_SEND_BATCH_SIZE
    campaign = Campaign.objects.select_related("purpose").get(pk=campaign_id)
    transport = transport_for_settings()  # refuses an insecure configuration before anything is claimed
    claimed = _deliveries_claim(campaign_id=campaign_id, batch_size=batch_size)
    if not claimed:
        return 0
    transient: Exception | None = None
    try:
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
                return len(claimed)
            patient_ids = [patient_id for _, patient_id, _ in deliveries]
            coverage = authorization_lock_covering(purpose_id=campaign.purpose_id, patient_ids=patient_ids)
            uncovered = [pid for pid in patient_ids if pid not in coverage]
            gaps = authorization_gap_list(purpose_id=campaign.purpose_id, patient_ids=uncovered) if uncovered else {}
            # A suppressed address (hard bounce, complaint) gets nothing even when covered (R-BOUNCE-SUPPRESS).
            gaps |= patient_suppression_list(patient_ids=[pid for pid in patient_ids if pid in coverage])
            render = CampaignRender(campaign=campaign)
            limiter = rate_limiter()
            sent: dict[int, int] = {}
            blocked: dict[int, str] = {}
            failed: dict[int, str] = {}
            released: list[int] = []
            try:
                for index, (pk, patient_id, address) in enumerate(deliveries):
                    authorization = coverage.get(patient_id)
                    if authorization is None or patient_id in gaps:
                        blocked[pk] = gaps[patient_id]
                        continue
                    message = render.assemble(delivery_id=pk, to_address=address)
                    limiter.acquire()
                    try:
                        transport.send(message)
                    except smtplib.SMTPException as error:
                        if not _is_recipient_refusal(error):
                            transient = error
                            released = [later for later, _, _ in deliveries[index:]]
                            break
                        failed[pk] = f"smtp {_refusal_code(error)}"
                        # A hard bounce suppresses the address for every later marketing message.
                        suppression_record(
                            actor=None,
                            email=address,
                            reason=Suppression.Reason.HARD_BOUNCE,
                            smtp_code=str(_refusal_code(error)),
                        )
                        continue
                    except OSError as error:  # connection refused or dropped: the server is away
                        transient = error
                        released = [later for later, _, _ in deliveries[index:]]
                        break
                    sent[pk] = authorization.pk
            finally:
                transport.close()
            _deliveries_record(sent=sent, blocked=blocked, failed=failed, released=released)
            outcomes: dict[str, list[int]] = defaultdict(list)
            for pk in sent:
                outcomes["sent"].append(pk)
            for pk, reason in blocked.items():
                outcomes[f"blocked_{reason}"].append(pk)
            for pk in failed:
                outcomes["failed"].append(pk)
            if outcomes:
                audit_record(
                    actor=None,
                    actor_role=SYSTEM,
                    action="delivery.batch_dispatched",
                    object_type="campaign",
                    object_id=campaign_id,
                    details={key: sorted(value) for key, value in outcomes.items()},
                )
    finally:
        transport.close()
    if transient is not None:
        logger.warning("campaign %s: mail server deferred the batch (%s)", campaign_id, type(transient).__name__)
        raise TransientSendError(str(type(transient).__name__))
    return len(claimed)


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
