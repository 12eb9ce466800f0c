"""Reads about campaigns."""
from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count, QuerySet
from django.utils import timezone

from campaigns.coverage import sent_without_coverage_counts
from campaigns.models import Campaign, Delivery
from consent.selectors import authorization_gap_list, patient_suppression_list


def delivery_block_reason_list(*, purpose_id: int, patient_ids: Iterable[int]) -> dict[int, str]:
    """Why a message for this purpose to each of these patients would be blocked now: no covering
    authorization (with consent's reason) or a suppressed address (R-BOUNCE-SUPPRESS). Patients left out would
    be sent to. For the launch and the screens only: the sender decides again, under lock."""
    patient_ids = list(patient_ids)
    reasons = authorization_gap_list(purpose_id=purpose_id, patient_ids=patient_ids)
    reasons |= patient_suppression_list(patient_ids=[pid for pid in patient_ids if pid not in reasons])
    return reasons


def campaign_list() -> QuerySet[Campaign]:
    return Campaign.objects.select_related("purpose", "created_by").order_by("-created_at")


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


def delivery_sent_without_coverage_count(*, campaign_id: int) -> int:
    """Sent deliveries whose recorded authorization did not cover them when they were sent (another patient or
    purpose, not yet signed, expired, ended by an event, revoked, defective). Computed from the evidence by
    campaigns.coverage, never asserted: it must be zero."""
    return sent_without_coverage_counts(Delivery.objects.filter(campaign_id=campaign_id))["total"]


def delivery_evidence_list(*, campaign_id: int) -> QuerySet[Delivery]:
    """Patient-level evidence of each decision, for compliance officers: ids and dates, no names."""
    return (
        Delivery.objects.filter(campaign_id=campaign_id)
        .select_related("authorization", "authorization__revocation")
        .order_by("id")
    )
