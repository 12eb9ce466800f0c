"""Reads about campaigns."""
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from audit import actions
from audit.models import AuditEvent
from audit.selectors import AuditFilters, audit_event_queryset
from campaigns.models import Campaign, Delivery
from campaigns.selectors.coverage import sent_without_coverage_counts
from consent.selectors.coverage import authorization_gap_list, patient_suppression_list

# The audit actions that record deliveries' outcomes (campaigns.services writes them).
BATCH_ACTION = actions.DELIVERY_BATCH_DISPATCHED
LAUNCH_ACTION = actions.CAMPAIGN_LAUNCHED
CANCEL_ACTION = actions.CAMPAIGN_CANCELLED
# A journey's scanner pass: it prepares the step messages that came due, and records the ones it did not send
# (not covered, frequency cap) by outcome, one event per journey and pass (object: the journey).
JOURNEY_PASS_ACTION = actions.JOURNEY_STEPS_RUN
# The key of a journey.steps_run event's details that lists the ids of the deliveries its pass created blocked
# (not covered, over the frequency cap): the audit record of each, as a batch event's "blocked" is. The journey
# engine writes it.
JOURNEY_PASS_BLOCKED = "blocked_deliveries"


# --- Journey messages ----------------------------------------------------------------------------------------

# How the journeys app names a send step's campaign ("<journey> · v<version> · step <position>", ADR 0016).
_STEP_NAME = re.compile(r"^(?P<journey>.+) · v(?P<version>[0-9]+) · step (?P<step>[0-9]+)$")


@dataclass(frozen=True)
class JourneyMessage:
    """What a journey step campaign is, for the reports and the patient history: its journey's name, version and
    step, read from the campaign's name (campaigns never import journeys)."""

    journey: str
    version: int | None = None
    step: int | None = None

    @property
    def label(self) -> str:
        if self.step is None:
            return gettext("Journey message: %(journey)s") % {"journey": self.journey}
        return gettext("Journey message: %(journey)s · step %(step)s") % {"journey": self.journey, "step": self.step}


def journey_message_of(campaign: Campaign) -> JourneyMessage | None:
    """The journey message a campaign is, or None for a campaign. A step campaign whose name is not in the
    journeys' pattern (truncated at 200 characters) is labelled by its whole name."""
    if campaign.kind != Campaign.Kind.JOURNEY_STEP:
        return None
    match = _STEP_NAME.match(campaign.name)
    if match is None:
        return JourneyMessage(journey=campaign.name)
    return JourneyMessage(journey=match["journey"], version=int(match["version"]), step=int(match["step"]))


def message_label(campaign: Campaign) -> str:
    """A campaign's name, or "Journey message: <journey> · step N" for a journey's step campaign."""
    journey = journey_message_of(campaign)
    return journey.label if journey is not None else campaign.name


def delivery_block_reason_list(*, purpose_id: int, patient_ids: Iterable[int]) -> dict[int, str]:
    """Why a message for this purpose to each of these patients would be blocked now: no covering
    authorization (with consent's reason) or a suppressed address (R-BOUNCE-SUPPRESS). Patients left out would
    be sent to. For the launch and the screens only: the sender decides again, under lock."""
    patient_ids = list(patient_ids)
    reasons = authorization_gap_list(purpose_id=purpose_id, patient_ids=patient_ids)
    reasons |= patient_suppression_list(patient_ids=[pid for pid in patient_ids if pid not in reasons])
    return reasons


def campaign_list() -> QuerySet[Campaign]:
    """Campaigns, newest first; a journey's step campaigns are listed with their journey, not here."""
    return (
        Campaign.objects.filter(kind=Campaign.Kind.CAMPAIGN)
        .select_related("purpose", "created_by")
        .order_by("-created_at")
    )


def campaign_due_list(*, now: datetime | None = None) -> list[int]:
    """Scheduled campaigns whose time has come."""
    return list(
        Campaign.objects.filter(
            status=Campaign.Status.SCHEDULED, scheduled_for__lte=now or timezone.now()
        ).values_list("id", flat=True)
    )


def campaign_unfinished_list() -> list[int]:
    """Campaigns still sending with deliveries queued: the reconciler wakes a worker for each."""
    return list(
        Campaign.objects.filter(status=Campaign.Status.SENDING, deliveries__status=Delivery.Status.QUEUED)
        .values_list("id", flat=True)
        .distinct()
    )


def campaign_unmarked_sent_list() -> list[int]:
    """Campaigns still "sending" with nothing queued: every delivery reached its end, but the step that marks the
    campaign sent did not run (its worker stopped after the last batch, or the whole audience was blocked at
    launch and the wake-up was lost). The reconciler finishes each. A journey's step campaign is never finished:
    it stays open while its journey runs."""
    return list(
        Campaign.objects.filter(status=Campaign.Status.SENDING, kind=Campaign.Kind.CAMPAIGN)
        .exclude(deliveries__status=Delivery.Status.QUEUED)
        .values_list("id", flat=True)
    )


def delivery_outcome_counts(*, campaign_id: int) -> dict[str, int]:
    """Aggregate outcome of a campaign: {"sent": n, "queued": n, "failed": n, "blocked_<reason>": n}."""
    counts: dict[str, int] = {}
    rows = (
        Delivery.objects.filter(campaign_id=campaign_id)
        .values("status", "block_reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        key = f"blocked_{row['block_reason']}" if row["status"] == Delivery.Status.BLOCKED else row["status"]
        counts[key] = counts.get(key, 0) + row["n"]
    return counts


def delivery_queued_counts() -> dict[str, int]:
    """Deliveries waiting for the sender, per campaign kind (campaign, journey_step), every kind present even at 0:
    the metrics' database queue depth (observability.metrics, read at scrape time through the queued-claim index)."""
    counts = dict.fromkeys(Campaign.Kind.values, 0)
    rows = Delivery.objects.filter(status=Delivery.Status.QUEUED).values_list("campaign__kind").annotate(n=Count("id"))
    counts.update({kind: n for kind, n in rows.order_by()})
    return counts


def decided_percent(*, audience: int, queued: int) -> int:
    """How much of an audience is decided (sent, blocked or failed), in percent: what the progress bar shows."""
    return round(100 * (audience - queued) / audience) if audience else 0


def campaign_progress_percent(*, campaign_id: int) -> int:
    counts = delivery_outcome_counts(campaign_id=campaign_id)
    return decided_percent(audience=sum(counts.values()), queued=counts.get("queued", 0))


def delivery_sent_without_coverage_count(*, campaign_id: int) -> int:
    """Sent deliveries whose recorded authorization did not cover them when they were sent (another patient or
    purpose, not yet signed, expired, ended by an event, revoked, defective). Computed from the evidence by
    campaigns.selectors.coverage, never asserted: it must be zero."""
    return sent_without_coverage_counts(Delivery.objects.filter(campaign_id=campaign_id))["total"]


def delivery_evidence_list(*, campaign_id: int) -> QuerySet[Delivery]:
    """Patient-level evidence of each decision, for compliance officers: ids and dates, no names."""
    return (
        Delivery.objects.filter(campaign_id=campaign_id)
        .select_related("authorization", "authorization__revocation")
        .order_by("id")
    )


@dataclass(frozen=True)
class DeliveryHistoryRow:
    """One message prepared for a patient, for their audit history: what happened to it and which audit
    event recorded that (a send batch, the launch, or the cancel), so each line leads into the hash chain."""

    delivery: Delivery
    recorded_by: AuditEvent | None

    @property
    def journey_message(self) -> str:
        """"Journey message: <journey> · step N" for a journey's message, "" for a campaign's."""
        journey = journey_message_of(self.delivery.campaign)
        return journey.label if journey is not None else ""


def _batch_key(delivery: Delivery) -> str:
    if delivery.status == Delivery.Status.BLOCKED:
        return f"blocked_{delivery.block_reason}"
    return delivery.status  # "sent" or "failed", as the sender's batch event lists them


def _recording_event(delivery: Delivery) -> AuditEvent | None:
    """The audit event that records this delivery's outcome. The sender writes one `delivery.batch_dispatched`
    event per sending transaction, listing its delivery ids under the outcome (and each sent one's authorization
    and send time), in the transaction that checked coverage at `checked_at` (so not before it); deliveries blocked at launch are counted by `campaign.launched`, and those left queued when a
    campaign was cancelled by `campaign.cancelled`."""
    if delivery.status == Delivery.Status.QUEUED:
        return None
    campaign_events = audit_event_queryset(AuditFilters(campaign_id=delivery.campaign_id))
    batches = campaign_events.filter(action=BATCH_ACTION)
    checked = delivery.checked_at or delivery.sent_at
    if checked is not None:
        # Written in the sending transaction after its check (ADR 0010: checked_at, then each message's sent_at),
        # so not before the check (a second's margin: SQLite keeps the two clocks at different precisions).
        batches = batches.filter(occurred_at__gte=checked - timedelta(seconds=1))
    key = _batch_key(delivery)
    if connection.vendor == "postgresql":
        # details -> key @> '[id]': the campaign's batch events are one range of the object index, and the
        # containment test runs on those rows only.
        found = batches.filter(**{f"details__{key}__contains": [delivery.pk]}).order_by("occurred_at", "id").first()
    else:
        found = next(
            (event for event in batches.order_by("occurred_at", "id") if delivery.pk in event.details.get(key, ())),
            None,
        )
    if found is not None or delivery.status != Delivery.Status.BLOCKED:
        return found
    if delivery.block_reason == Delivery.BlockReason.CAMPAIGN_CANCELLED:
        return campaign_events.filter(action=CANCEL_ACTION).order_by("occurred_at", "id").first()
    if delivery.campaign.kind == Campaign.Kind.JOURNEY_STEP:
        return _journey_pass_event(delivery)
    return campaign_events.filter(action=LAUNCH_ACTION).order_by("occurred_at", "id").first()


# How long before a delivery's creation the pass that created it may have begun: far longer than a pass holds its
# transaction open (a pass of 500 takes well under a second).
_PASS_WINDOW = timedelta(minutes=10)


def _journey_pass_event(delivery: Delivery) -> AuditEvent | None:
    """A journey message is never launched: one not sent when its step came due (not covered, or over the
    frequency cap) was created blocked by a journey scanner pass, in the transaction of that pass's
    `journey.steps_run` event, which names it among its blocked deliveries. On PostgreSQL the event is dated by
    its transaction's start, before the delivery's creation; the window only narrows the search."""
    created = delivery.created_at
    passes = AuditEvent.objects.filter(
        action=JOURNEY_PASS_ACTION,
        object_type="journey",
        occurred_at__gte=created - _PASS_WINDOW,
        occurred_at__lte=created + timedelta(seconds=1),
    ).order_by("occurred_at", "id")
    if connection.vendor == "postgresql":
        return passes.filter(**{f"details__{JOURNEY_PASS_BLOCKED}__contains": [delivery.pk]}).first()
    return next(
        (event for event in passes if delivery.pk in event.details.get(JOURNEY_PASS_BLOCKED, ())),
        None,
    )


def delivery_history_list(*, patient_id: int) -> list[DeliveryHistoryRow]:
    """Every message prepared for this patient, newest first (one per campaign at most, one per step and
    enrolment for a journey's), each with the audit event that recorded its outcome; a journey's message says so
    (DeliveryHistoryRow.journey_message). For compliance officers: ids, codes and dates — a sent message's own
    `checked_at` and `sent_at`, a refused one's SMTP code — and the campaign's name and purpose, which are not
    about the patient."""
    deliveries = (
        Delivery.objects.filter(patient_id=patient_id)
        .select_related("campaign", "campaign__purpose", "authorization", "authorization__form_version")
        .annotate(moment=Coalesce("sent_at", "created_at"))
        .order_by("-moment", "-id")
    )
    return [DeliveryHistoryRow(delivery=delivery, recorded_by=_recording_event(delivery)) for delivery in deliveries]
