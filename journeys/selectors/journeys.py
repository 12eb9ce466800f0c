"""Reads about journeys."""
from __future__ import annotations

from django.db.models import QuerySet

from campaigns.models import Campaign
from journeys.models import Enrolment, Journey, JourneyVersion


def journey_list() -> QuerySet[Journey]:
    return Journey.objects.select_related("purpose", "created_by", "live_version").order_by("-created_at", "-id")


def journey_step_campaign_ids(*, version_id: int | None = None, journey_id: int | None = None) -> list[int]:
    """The step campaigns (Campaign.Kind.JOURNEY_STEP) of one version, or of every version of one journey."""
    campaigns = Campaign.objects.filter(kind=Campaign.Kind.JOURNEY_STEP)
    if version_id is not None:
        campaigns = campaigns.filter(journey_step__version_id=version_id)
    if journey_id is not None:
        campaigns = campaigns.filter(journey_step__version__journey_id=journey_id)
    return list(campaigns.order_by("pk").values_list("id", flat=True))


def journey_review_list() -> QuerySet[JourneyVersion]:
    """Versions waiting for a compliance officer, oldest first."""
    return (
        JourneyVersion.objects.filter(status=JourneyVersion.Status.SUBMITTED)
        .select_related("journey__purpose", "created_by")
        .order_by("submitted_at", "id")
    )


def enrolment_running_count(*, journey_id: int) -> int:
    return Enrolment.objects.filter(journey_id=journey_id, status=Enrolment.Status.ACTIVE).count()
