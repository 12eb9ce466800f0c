"""Reads for the journey pages: a journey's versions and a version's steps with their messages' content."""
from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from campaigns.models import CampaignBlock
from journeys.models import JourneyStep, JourneyVersion


def journey_version_list(*, journey_id: int) -> QuerySet[JourneyVersion]:
    """Every version of a journey, newest first, with its author, approver and reviewer."""
    return (
        JourneyVersion.objects.filter(journey_id=journey_id)
        .select_related("created_by", "approved_by", "reviewed_by", "segment")
        .order_by("-number")
    )


def journey_step_list(*, version_id: int) -> list[JourneyStep]:
    """A version's steps in order, each send step with its campaign (template, purpose) and blocks in order."""
    return list(
        JourneyStep.objects.filter(version_id=version_id)
        .select_related("campaign__template", "campaign__purpose")
        .prefetch_related(
            Prefetch(
                "campaign__content_blocks",
                queryset=CampaignBlock.objects.select_related("block").order_by("position"),
            )
        )
        .order_by("position")
    )


def journey_open_versions(*, journey_ids: list[int]) -> dict[int, JourneyVersion]:
    """The version being written or reviewed (draft, submitted or rejected) of each journey that has one."""
    versions = JourneyVersion.objects.filter(
        journey_id__in=journey_ids,
        status__in=(JourneyVersion.Status.DRAFT, JourneyVersion.Status.SUBMITTED, JourneyVersion.Status.REJECTED),
    ).order_by("number")
    return {version.journey_id: version for version in versions}
