"""Who may see what of a campaign. One policy, used by every campaign view."""
from django.http import Http404

from campaigns.models import Campaign
from hipaamail.roles import sees_patient_evidence

# R-SMALL-CELL: counts from 1 to 10 read "fewer than 11" on a marketer's screen.
SMALL_CELL_LIMIT = 10


def access_campaign_by_id(user, campaign_id: int) -> Campaign:
    """Every staff role may open a campaign; "missing" and "not yours" would give the same 404."""
    try:
        return Campaign.objects.select_related("purpose", "created_by").get(pk=campaign_id)
    except Campaign.DoesNotExist:
        raise Http404 from None


def access_campaign_review_by_id(user, campaign_id: int) -> Campaign:
    """Reviewing, approving and sending: compliance officers and administrators only; to anyone else the
    page does not exist."""
    if not sees_patient_evidence(user):
        raise Http404
    return access_campaign_by_id(user, campaign_id)


def may_control_sending(user) -> bool:
    """Scheduling, sending, pausing, resuming and cancelling a campaign: compliance officers and administrators.
    Marketers see the status only."""
    return user is not None and sees_patient_evidence(user)


def count_for_marketer(count: int) -> str:
    if 1 <= count <= SMALL_CELL_LIMIT:
        return "fewer than 11"
    return f"{count:,}"
