"""Writes for the campaign editor and review (issue 5, items 1, 3 and 4): create with a segment, edit, reject.
The second factor asked again before approving or sending is campaigns.reentry's (a code, or a passkey).

DESIGN.md: the approver is never the author (campaigns.services.campaign_approve refuses); an edit after
approval voids the approval; approving and sending ask the staff user to re-enter their second factor. Every
action is audited with ids and codes only: the reviewer's comment is free text and never reaches the audit trail
(its length does). The comment itself is stored on the campaign, for its author to read.
"""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from campaigns.content import CampaignContent
from campaigns.models import Campaign, CampaignBlock, ContentBlock, EmailTemplate, Segment
from campaigns.services import _campaign_locked, _campaign_move, campaign_create
from campaigns.services_content import campaign_content_validate
from consent.models import Purpose

EDITABLE = {Campaign.Status.DRAFT, Campaign.Status.REJECTED, Campaign.Status.APPROVED}
_CONTENT_FIELDS = ("name", "purpose", "segment", "subject", "body_text", "template")
COMMENT_MAX_LENGTH = 2000


def campaign_create_draft(
    *,
    actor,
    name: str,
    purpose: Purpose,
    segment: Segment | None,
    subject: str,
    body_text: str,
    template: EmailTemplate | None = None,
    blocks: list[ContentBlock] | tuple = (),
) -> Campaign:
    """A new draft (campaigns.services.campaign_create), with its segment (None: every patient), its template
    and its blocks in order (approved ones only)."""
    with transaction.atomic(durable=True):
        campaign = campaign_create(
            actor=actor, name=name, purpose=purpose, subject=subject, body_text=body_text, template=template,
            blocks=blocks,
        )
        if segment is not None:
            campaign.segment = segment
            campaign.full_clean()
            Campaign.objects.filter(pk=campaign.pk).update(segment=segment)
            audit_record(
                actor=actor,
                action="campaign.segment_set",
                object_type="campaign",
                object_id=campaign.pk,
                details={"segment": segment.pk},
            )
    return campaign


def campaign_update(
    *,
    actor,
    campaign_id: int,
    name: str,
    purpose: Purpose,
    segment: Segment | None,
    subject: str,
    body_text: str,
    template: EmailTemplate | None = None,
    blocks: list[ContentBlock] | tuple = (),
) -> Campaign:
    """Change a draft, rejected or approved campaign. Editing an approved campaign voids its approval: it is a
    draft again and must be submitted and approved anew. Submitted, scheduled, sending, sent and cancelled
    campaigns cannot be edited. Saving without any change changes nothing (and voids nothing). The content must
    pass campaigns.services_content.campaign_content_validate (approved template and blocks, merge fields only)."""
    blocks = list(blocks)
    with _campaign_locked(campaign_id, allowed=EDITABLE, cannot_be="edited") as campaign:
        new = {
            "name": name, "purpose": purpose, "segment": segment, "subject": subject, "body_text": body_text,
            "template": template,
        }
        changed = [field for field in _CONTENT_FIELDS if getattr(campaign, field) != new[field]]
        current_blocks = list(
            CampaignBlock.objects.filter(campaign=campaign).order_by("position").values_list("block_id", flat=True)
        )
        blocks_changed = current_blocks != [block.pk for block in blocks]
        if not changed and not blocks_changed:
            return campaign
        campaign_content_validate(
            CampaignContent(
                purpose=purpose, subject=subject, intro_text=body_text, template=template, blocks=tuple(blocks)
            )
        )
        for field in changed:
            setattr(campaign, field, new[field])
        previous = campaign.status
        voided = []
        if previous == Campaign.Status.APPROVED:
            # The approval is void: nobody has approved this version (the audit trail keeps who approved the last).
            campaign.status = Campaign.Status.DRAFT
            campaign.approved_by, campaign.approved_at = None, None
            voided = ["approved_by", "approved_at"]
        campaign.full_clean()
        campaign.save(update_fields=[*changed, "status", *voided])
        if blocks_changed:
            CampaignBlock.objects.filter(campaign=campaign).delete()
            CampaignBlock.objects.bulk_create(
                [CampaignBlock(campaign=campaign, block=block, position=index) for index, block in enumerate(blocks)]
            )
            changed.append("blocks")
        audit_record(
            actor=actor,
            action="campaign.updated",
            object_type="campaign",
            object_id=campaign.pk,
            details={
                "changed": changed,
                "purpose": campaign.purpose_id,
                "segment": campaign.segment_id,
                **({"template": campaign.template_id} if "template" in changed else {}),
                **({"blocks": [block.pk for block in blocks]} if blocks_changed else {}),
            },
        )
        if previous == Campaign.Status.APPROVED:
            audit_record(
                actor=actor,
                action="campaign.approval_voided",
                object_type="campaign",
                object_id=campaign.pk,
                details={"from": previous, "to": campaign.status},
            )
    return campaign


def campaign_reject(*, actor, campaign_id: int, comment: str) -> Campaign:
    """Send a submitted campaign back to its author with the reviewer's comment, stored on the campaign for the
    author to read (review_comment, reviewed_by, reviewed_at). The comment is required; the audit trail records
    only its length (free text never reaches the audit details)."""
    comment = comment.strip()
    if not comment:
        raise ValidationError("Say why the campaign is rejected: the comment is required.")
    if len(comment) > COMMENT_MAX_LENGTH:
        raise ValidationError(f"Keep the comment under {COMMENT_MAX_LENGTH} characters.")
    with _campaign_locked(campaign_id, allowed=(Campaign.Status.SUBMITTED,), cannot_be="rejected") as campaign:
        _campaign_move(
            campaign,
            actor=actor,
            to=Campaign.Status.REJECTED,
            action="campaign.rejected",
            details={"comment_length": len(comment)},
            clean=True,
            review_comment=comment,
            reviewed_by=actor,
            reviewed_at=timezone.now(),
        )
    return campaign
