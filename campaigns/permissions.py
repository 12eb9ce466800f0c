"""Who may see what of a campaign. One policy, used by every campaign view."""
from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext

from accounts.roles import ADMINISTRATOR, COMPLIANCE_OFFICER, is_staff_member, roles_of, sees_patient_evidence
from audit.exceptions import NotFound
from campaigns.models import Campaign, ContentBlock, EmailTemplate, Segment

# R-SMALL-CELL: counts from 1 to 10 read "fewer than 11" on a marketer's screen.
SMALL_CELL_LIMIT = 10


def access_campaign_by_id(user, campaign_id: int) -> Campaign:
    """Every staff role may open a campaign; "missing" and "not yours" would give the same 404."""
    try:
        return Campaign.objects.select_related("purpose", "created_by").get(pk=campaign_id)
    except Campaign.DoesNotExist:
        raise NotFound from None


def access_campaign_review_by_id(user, campaign_id: int) -> Campaign:
    """Reviewing, approving and sending: compliance officers and administrators only; to anyone else the
    page does not exist."""
    if not sees_patient_evidence(user):
        raise NotFound
    return access_campaign_by_id(user, campaign_id)


def may_control_sending(user) -> bool:
    """Scheduling, sending, pausing, resuming and cancelling a campaign: compliance officers and administrators.
    Marketers see the status only."""
    return user is not None and sees_patient_evidence(user)


def count_for_marketer(count: int) -> str:
    if 1 <= count <= SMALL_CELL_LIMIT:
        return gettext("fewer than 11")
    return f"{count:,}"


@dataclass(frozen=True)
class CountPolicy:
    """How counts about patients are shown to one viewer (R-SMALL-CELL, R-MIN-NECESSARY). `exact`: every count as
    it is; otherwise each cell from 1 to 10 reads "fewer than 11" and the selectors withhold a total that would give
    a suppressed cell back (campaigns.selectors.segments, campaigns.selectors.results)."""

    exact: bool

    def count(self, count: int) -> str:
        return f"{count:,}" if self.exact else count_for_marketer(count)


def count_policy_for(user) -> CountPolicy:
    """THE decision of who sees exact counts: compliance officers and administrators, who see patient-level evidence
    anyway. Everyone else, marketers and any role added later, sees small cells suppressed (deny by default). Views
    call this and hand the policy to the selectors; none decides by role itself."""
    return CountPolicy(exact=user is not None and sees_patient_evidence(user))


def sending_control_check(actor) -> None:
    """Scheduling, launching by hand, pausing, resuming and cancelling: compliance officers and administrators."""
    if not may_control_sending(actor):
        raise PermissionDenied("Only a compliance officer or an administrator may do that.")


def may_manage_content(user) -> bool:
    return bool(roles_of(user) & {COMPLIANCE_OFFICER, ADMINISTRATOR})


def access_content_library(user) -> None:
    if not may_manage_content(user):
        raise NotFound


def access_email_template_by_id(user, template_id: int) -> EmailTemplate:
    access_content_library(user)
    try:
        return EmailTemplate.objects.select_related("created_by", "approved_by").get(pk=template_id)
    except EmailTemplate.DoesNotExist:
        raise NotFound from None


def access_content_block_by_id(user, block_id: int) -> ContentBlock:
    access_content_library(user)
    try:
        return ContentBlock.objects.select_related("created_by", "approved_by").get(pk=block_id)
    except ContentBlock.DoesNotExist:
        raise NotFound from None


def access_segments(user) -> None:
    """Marketers, compliance officers and administrators work with segments; anyone else gets a 404."""
    if not is_staff_member(user):
        raise NotFound


def access_segment_by_id(user, segment_id: int) -> Segment:
    access_segments(user)
    segment = Segment.objects.select_related("created_by").filter(pk=segment_id).first()
    if segment is None:
        raise NotFound
    return segment
