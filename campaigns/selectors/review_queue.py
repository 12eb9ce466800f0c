"""The "needs your review" queue (issue 17): what waits for a compliance officer or an administrator, oldest first,
with who submitted it and when. Campaigns come from here; journey versions from journeys.selectors (journeys stands
above campaigns, so hipaamail.context_processors.review_counts puts the two together with `review_queue_merge`)."""
from dataclasses import dataclass
from datetime import datetime

from django.db.models import CharField, OuterRef, Subquery
from django.db.models.functions import Cast
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from audit import actions
from audit.models import AuditEvent
from campaigns.models import Campaign


@dataclass(frozen=True)
class ReviewItem:
    """One thing waiting for review. `own`: the viewer wrote it, so another reviewer must approve it."""

    kind: str  # "campaign" or "journey"
    kind_label: str
    name: str
    purpose: str
    submitted_by: str
    submitted_at: datetime | None
    url: str
    own: bool = False


def campaign_review_list():
    """Submitted campaigns (not journeys' step campaigns), each with `submitted_at`: when it was last submitted,
    from the audit trail (campaign.submitted), oldest first."""
    last_submitted = (
        AuditEvent.objects.filter(
            action=actions.CAMPAIGN_SUBMITTED,
            object_type="campaign",
            object_id=Cast(OuterRef("pk"), output_field=CharField()),
        )
        .order_by("-occurred_at", "-id")
        .values("occurred_at")[:1]
    )
    return (
        Campaign.objects.filter(kind=Campaign.Kind.CAMPAIGN, status=Campaign.Status.SUBMITTED)
        .select_related("purpose", "created_by")
        .annotate(submitted_at=Subquery(last_submitted))
        .order_by("submitted_at", "id")
    )


def campaign_review_items(*, viewer) -> list[ReviewItem]:
    return [
        ReviewItem(
            kind="campaign",
            kind_label=str(_("Campaign")),
            name=campaign.name,
            purpose=campaign.purpose.name,
            submitted_by=campaign.created_by.email,
            submitted_at=campaign.submitted_at,
            url=reverse("campaigns:campaign_review", args=[campaign.pk]),
            own=campaign.created_by_id == viewer.pk,
        )
        for campaign in campaign_review_list()
    ]


def review_queue_merge(*sources: list[ReviewItem]) -> list[ReviewItem]:
    """Every source's items in one list, oldest submission first (an item with no known time last)."""
    items = [item for source in sources for item in source]
    return sorted(items, key=lambda item: (item.submitted_at is None, item.submitted_at or datetime.min, item.name))
