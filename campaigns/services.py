"""Writes about campaigns, and the one sender of marketing mail (`delivery_dispatch_batch`).

Every path that hands a campaign message to the mail backend goes through `delivery_dispatch_batch`, which
locks the deliveries, locks their covering authorizations, re-checks coverage at the database's clock, sends,
and records each outcome in one transaction (DESIGN.md, R-SEND-COVERED, R-SEND-EVIDENCE).
"""
import logging
import smtplib
from collections import defaultdict
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import get_connection
from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from audit.services import SYSTEM, audit_record
from campaigns.messages import message_compose, message_id_for
from campaigns.models import Campaign, Delivery
from consent.models import Patient, Purpose, Revocation
from consent.selectors import authorization_covering_list, authorization_gap_list, authorization_lock_covering
from consent.services import authorization_revoke

logger = logging.getLogger(__name__)

_LAUNCH_INSERT_BATCH = 2000


class TransientSendError(Exception):
    """The mail server could not take more messages now; what was sent is recorded, the rest stays queued."""


def campaign_create(*, actor, name: str, purpose: Purpose, subject: str, body_text: str) -> Campaign:
    campaign = Campaign(name=name, purpose=purpose, subject=subject, body_text=body_text, created_by=actor)
    campaign.full_clean()
    with transaction.atomic():
        campaign.save(force_insert=True)
        audit_record(
            actor=actor,
            action="campaign.created",
            object_type="campaign",
            object_id=campaign.pk,
            details={"purpose": purpose.code},
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
    return _campaign_transition(
        actor=actor,
        campaign_id=campaign_id,
        allowed_from={Campaign.Status.DRAFT, Campaign.Status.REJECTED},
        to=Campaign.Status.SUBMITTED,
        action="submitted",
    )


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

    Patients without a covering authorization get a delivery that is blocked from the start with its
    reason, so the report shows the whole audience. This check is advisory: the sender checks again.
    Launching twice is refused by the status check, made under the campaign's row lock.
    """
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.select_for_update().select_related("purpose").get(pk=campaign_id)
        if campaign.status not in (Campaign.Status.APPROVED, Campaign.Status.SCHEDULED):
            raise ValidationError(f"A {campaign.get_status_display().lower()} campaign cannot be launched.")
        # The audience is every patient until issue 5 brings segments.
        audience = list(Patient.objects.order_by("id").values_list("id", flat=True))
        covered = set(
            authorization_covering_list(purpose_id=campaign.purpose_id).values_list("patient_id", flat=True)
        )
        gaps = authorization_gap_list(
            purpose_id=campaign.purpose_id, patient_ids=[pid for pid in audience if pid not in covered]
        )
        rows = [
            Delivery(campaign_id=campaign.pk, patient_id=patient_id)
            if patient_id in covered
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
            details={"audience": len(audience), "queued": len(covered & set(audience)), "blocked": blocked_counts},
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


def delivery_dispatch_batch(*, campaign_id: int, batch_size: int | None = None) -> int:
    """THE sender. Claim up to `batch_size` queued deliveries, check consent under lock, send, record.

    Returns how many deliveries this batch decided (0 when nothing was left to claim). Raises
    TransientSendError after committing the outcomes recorded so far when the mail server asks us to
    come back later; the deliveries it did not take stay queued for the retry.
    """
    batch_size = batch_size or settings.HIPAAMAIL_SEND_BATCH_SIZE
    campaign = Campaign.objects.select_related("purpose").get(pk=campaign_id)
    transient: Exception | None = None
    with transaction.atomic(durable=True):
        # Lock order everywhere: deliveries, then authorizations, then the audit chain (DESIGN.md).
        deliveries = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(campaign_id=campaign_id, status=Delivery.Status.QUEUED)
            .select_related("patient")
            .order_by("id")[:batch_size]
        )
        if not deliveries:
            return 0
        patient_ids = [delivery.patient_id for delivery in deliveries]
        coverage = authorization_lock_covering(purpose_id=campaign.purpose_id, patient_ids=patient_ids)
        gaps = authorization_gap_list(
            purpose_id=campaign.purpose_id, patient_ids=[pid for pid in patient_ids if pid not in coverage]
        )
        outcomes: dict[str, list[int]] = defaultdict(list)
        decided = 0
        connection = get_connection(fail_silently=False)
        try:
            for delivery in deliveries:
                authorization = coverage.get(delivery.patient_id)
                if authorization is None:
                    delivery.status = Delivery.Status.BLOCKED
                    delivery.block_reason = gaps[delivery.patient_id]
                    delivery.save(update_fields=["status", "block_reason"])
                    outcomes[f"blocked_{delivery.block_reason}"].append(delivery.pk)
                    decided += 1
                    continue
                message = message_compose(campaign=campaign, delivery=delivery, to_address=delivery.patient.email)
                try:
                    # open() does nothing once open, so the whole batch shares one SMTP session.
                    connection.open()
                    connection.send_messages([message])
                except smtplib.SMTPException as error:
                    if not _is_recipient_refusal(error):
                        transient = error
                        break
                    delivery.status = Delivery.Status.FAILED
                    delivery.error = f"smtp {getattr(error, 'smtp_code', '') or 'refused'}"
                    delivery.save(update_fields=["status", "error"])
                    outcomes["failed"].append(delivery.pk)
                    decided += 1
                    continue
                except OSError as error:  # connection refused or dropped: the server is away, not the recipient
                    transient = error
                    break
                delivery.status = Delivery.Status.SENT
                delivery.authorization = authorization
                delivery.message_id = message_id_for(delivery.pk)
                delivery.sent_at = Now()
                delivery.save(update_fields=["status", "authorization", "message_id", "sent_at"])
                outcomes["sent"].append(delivery.pk)
                decided += 1
        finally:
            connection.close()
        if decided:
            audit_record(
                actor=None,
                actor_role=SYSTEM,
                action="delivery.batch_dispatched",
                object_type="campaign",
                object_id=campaign_id,
                details=dict(outcomes),
            )
    if transient is not None:
        logger.warning("campaign %s: mail server deferred the batch (%s)", campaign_id, type(transient).__name__)
        raise TransientSendError(str(type(transient).__name__))
    return decided


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
