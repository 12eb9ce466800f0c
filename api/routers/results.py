"""Results: one delivery's status by its id, and a campaign's aggregate results with the marketer's small-cell
rules (a key never sees exact counts of 1 to 10: campaigns.selectors.results)."""
from datetime import datetime

from ninja import Query, Router, Schema

from api.auth import KeyAuth
from api.pagination import DEFAULT_LIMIT, MAX_LIMIT, page
from api.problems import ApiProblem, error_responses
from api.scopes import RESULTS_READ
from campaigns.models import Campaign, Delivery
from campaigns.selectors.results import campaign_counts, results_view

router = Router(tags=["results"])


class DeliveryOut(Schema):
    id: int
    campaign_id: int
    patient_id: int
    status: str  # queued, sent, blocked, failed
    block_reason: str  # why a blocked delivery was not sent (no_authorization, revoked, expired, suppressed, ...)
    checked_at: datetime | None
    sent_at: datetime | None
    smtp_code: int | None
    bounce_type: str  # "", "hard" or "soft"
    bounced_at: datetime | None


class CountOut(Schema):
    key: str
    label: str
    text: str  # as a marketer reads it: "1,204", "fewer than 11", "all but fewer than 11"
    exact: int | None  # the number when it is shown as it is; null when withheld
    low: int  # the range it lies in (equal to exact when shown)
    high: int


class CampaignResultsOut(Schema):
    campaign_id: int
    name: str
    purpose: str
    status: str
    tracking: bool
    counts: list[CountOut]


class CampaignOut(Schema):
    id: int
    name: str
    purpose: str
    status: str
    created_at: datetime
    scheduled_for: datetime | None


class CampaignList(Schema):
    items: list[CampaignOut]
    next_cursor: str | None


@router.get(
    "deliveries/{delivery_id}",
    response={200: DeliveryOut, **error_responses()},
    auth=KeyAuth(RESULTS_READ),
    summary="A delivery's status",
)
def delivery_get(request, delivery_id: int):
    """The status of one message of a campaign, by the delivery id a webhook or the results named."""
    delivery = Delivery.objects.filter(pk=delivery_id).first() if 0 < delivery_id < 2**63 else None
    if delivery is None:
        raise ApiProblem(404, "not_found", "Not found", "No delivery has this id.")
    return {
        "id": delivery.pk,
        "campaign_id": delivery.campaign_id,
        "patient_id": delivery.patient_id,
        "status": delivery.status,
        "block_reason": delivery.block_reason,
        "checked_at": delivery.checked_at,
        "sent_at": delivery.sent_at,
        "smtp_code": delivery.smtp_code,
        "bounce_type": delivery.bounce_type or "",
        "bounced_at": delivery.bounced_at,
    }


@router.get(
    "campaigns",
    response={200: CampaignList, **error_responses()},
    auth=KeyAuth(RESULTS_READ),
    summary="List campaigns",
)
def campaign_list(request, cursor: str | None = None, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)):
    """Campaigns, newest first."""
    rows, next_cursor = page(Campaign.objects.select_related("purpose"), cursor=cursor, limit=limit, descending=True)
    return {
        "items": [
            {
                "id": campaign.pk,
                "name": campaign.name,
                "purpose": campaign.purpose.code,
                "status": campaign.status,
                "created_at": campaign.created_at,
                "scheduled_for": campaign.scheduled_for,
            }
            for campaign in rows
        ],
        "next_cursor": next_cursor,
    }


@router.get(
    "campaigns/{campaign_id}/results",
    response={200: CampaignResultsOut, **error_responses()},
    auth=KeyAuth(RESULTS_READ),
    summary="A campaign's aggregate results",
)
def campaign_results(request, campaign_id: int):
    """Counts as the marketer's results screen shows them: a count of 1 to 10 is withheld ("fewer than 11"), and
    so is any total or rate that would give one away."""
    campaign = Campaign.objects.select_related("purpose").filter(pk=campaign_id).first() if 0 < campaign_id < 2**63 else None
    if campaign is None:
        raise ApiProblem(404, "not_found", "Not found", "No campaign has this id.")
    view = results_view(campaign_counts(campaign=campaign), exact=False)
    return {
        "campaign_id": campaign.pk,
        "name": campaign.name,
        "purpose": campaign.purpose.code,
        "status": campaign.status,
        "tracking": view.tracking,
        "counts": [
            {"key": row.key, "label": str(row.label), "text": str(row.cell.text), "exact": row.cell.exact,
             "low": row.cell.low, "high": row.cell.high}
            for row in view.rows
        ],
    }
