"""What a campaign's author does with drafts beside writing them (issue 17, item 1): the wizard's first save, the
purpose changed afterwards, a copy of any campaign as a new draft, a draft deleted, a submission withdrawn.

The state machine stays in campaigns.services.lifecycle: these services call its steps (campaign_create,
campaign_update, campaign_move) and never move a campaign by themselves. Each is audited with ids and codes only;
a refusal is audited too and raised after its commit, so that it stays on the record.
"""
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.roles import ADMINISTRATOR, roles_of
from audit import actions
from audit.services import audit_record
from campaigns.content import block_allowed_for, content_of
from campaigns.models import Campaign, ContentStatus
from campaigns.services.lifecycle import campaign_create, campaign_move, campaign_update
from consent.models import Purpose

COPY_SUFFIX = " (copy)"


def _author_or_administrator(actor, campaign: Campaign) -> bool:
    return campaign.created_by_id == actor.pk or ADMINISTRATOR in roles_of(actor)


def campaign_draft_start(*, actor, name: str, purpose: Purpose) -> Campaign:
    """The wizard's first step: a draft as soon as it has a purpose and a name, for every patient, with no content
    yet. The subject starts as the name (a campaign always has one); the content step changes it."""
    name = name.strip()
    subject = name[: Campaign._meta.get_field("subject").max_length]
    return campaign_create(actor=actor, name=name, purpose=purpose, subject=subject, body_text="")


def _campaign_update_keeping(*, actor, campaign: Campaign, **changes) -> Campaign:
    """campaign_update with what a wizard step does not change kept as it is (its editing rules apply)."""
    kept = {
        "name": campaign.name,
        "purpose": campaign.purpose,
        "segment": campaign.segment,
        "subject": campaign.subject,
        "body_text": campaign.body_text,
        "template": campaign.template,
    }
    if "blocks" not in changes:
        kept["blocks"] = list(content_of(campaign).blocks)
    return campaign_update(actor=actor, campaign_id=campaign.pk, **(kept | changes))


def _campaign_for_step(campaign_id: int) -> Campaign:
    return Campaign.objects.select_related("purpose", "segment", "template").get(pk=campaign_id)


def campaign_draft_purpose_set(*, actor, campaign_id: int, name: str, purpose: Purpose) -> tuple[Campaign, int]:
    """Change a campaign's name and purpose (the wizard's first step, again). Blocks not approved for the new
    purpose are taken out of its content, since a draft never holds one; returns the campaign and how many were
    taken out. Editing rules (what can be edited, an approval voided) are campaign_update's."""
    campaign = _campaign_for_step(campaign_id)
    blocks = list(content_of(campaign).blocks)
    kept = [block for block in blocks if block_allowed_for(block, purpose_id=purpose.pk)]
    updated = _campaign_update_keeping(actor=actor, campaign=campaign, name=name.strip(), purpose=purpose, blocks=kept)
    return updated, len(blocks) - len(kept)


def campaign_draft_audience_set(*, actor, campaign_id: int, segment) -> Campaign:
    """Set a campaign's audience (the wizard's second step): a segment, or None for every patient. Editing rules are
    campaign_update's; its content stays as it is."""
    return _campaign_update_keeping(actor=actor, campaign=_campaign_for_step(campaign_id), segment=segment)


def campaign_draft_content_set(
    *, actor, campaign_id: int, subject: str, body_text: str, template=None, blocks=()
) -> Campaign:
    """Set a campaign's content (the wizard's content step); its name, purpose and audience stay as they are."""
    return _campaign_update_keeping(
        actor=actor, campaign=_campaign_for_step(campaign_id), subject=subject, body_text=body_text,
        template=template, blocks=list(blocks),
    )


def campaign_duplicate(*, actor, campaign_id: int) -> tuple[Campaign, int]:
    """A new draft, by `actor`, with the same purpose, audience and content as the campaign (whatever its status).
    An item of the content library retired since (or a block no longer for the purpose) is left out, since a draft
    never holds one; returns the copy and how many items were left out. Audited as campaign.created (by
    campaign_create), campaign.segment_set and campaign.duplicated, in one transaction."""
    source = Campaign.objects.select_related("purpose", "segment", "template").get(pk=campaign_id)
    if source.kind != Campaign.Kind.CAMPAIGN:
        raise ValidationError(_("A journey’s step is copied with its journey, not on its own."))
    blocks = list(content_of(source).blocks)
    kept = [
        block
        for block in blocks
        if block.status == ContentStatus.APPROVED and block_allowed_for(block, purpose_id=source.purpose_id)
    ]
    template = source.template if source.template and source.template.status == ContentStatus.APPROVED else None
    left_out = len(blocks) - len(kept) + (1 if source.template and template is None else 0)
    limit = Campaign._meta.get_field("name").max_length
    name = source.name[: limit - len(COPY_SUFFIX)] + COPY_SUFFIX
    with transaction.atomic(durable=True):
        copy = campaign_create(
            actor=actor,
            name=name,
            purpose=source.purpose,
            subject=source.subject,
            body_text=source.body_text,
            template=template,
            blocks=kept,
        )
        if source.segment_id is not None:
            copy.segment = source.segment
            copy.full_clean()
            copy.save(update_fields=["segment"])
            audit_record(
                actor=actor,
                action=actions.CAMPAIGN_SEGMENT_SET,
                object_type="campaign",
                object_id=copy.pk,
                details={"segment": source.segment_id},
            )
        audit_record(
            actor=actor,
            action=actions.CAMPAIGN_DUPLICATED,
            object_type="campaign",
            object_id=copy.pk,
            details={"source": source.pk, "left_out": left_out},
        )
    return copy, left_out


# What was refused, in campaign.draft_action_refused's details.
REFUSED_DELETE = "delete"
REFUSED_WITHDRAW = "withdraw"


def _refuse(actor, campaign: Campaign, *, attempted: str, reason: str) -> None:
    audit_record(
        actor=actor,
        action=actions.CAMPAIGN_DRAFT_ACTION_REFUSED,
        object_type="campaign",
        object_id=campaign.pk,
        details={"action": attempted, "reason": reason, "status": campaign.status},
    )


def campaign_draft_delete(*, actor, campaign_id: int) -> None:
    """Delete a draft: only a draft (never one submitted, reviewed or sent, whose record is evidence), by its author
    or an administrator. Audited with the purpose's code; the audit trail keeps that it existed."""
    refusal = None
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.select_for_update(of=("self",)).select_related("purpose").get(pk=campaign_id)
        if campaign.status != Campaign.Status.DRAFT or campaign.kind != Campaign.Kind.CAMPAIGN:
            refusal = ValidationError(
                _("Only a draft can be deleted; this campaign is %(status)s.")
                % {"status": campaign.get_status_display().lower()}
            )
            _refuse(actor, campaign, attempted=REFUSED_DELETE, reason="status")
        elif not _author_or_administrator(actor, campaign):
            refusal = PermissionDenied(_("Only the draft\u2019s author or an administrator may delete it."))
            _refuse(actor, campaign, attempted=REFUSED_DELETE, reason="not_author")
        else:
            audit_record(
                actor=actor,
                action=actions.CAMPAIGN_DRAFT_DELETED,
                object_type="campaign",
                object_id=campaign.pk,
                details={"purpose": campaign.purpose.code, "segment": campaign.segment_id},
            )
            campaign.delete()  # its content blocks go with it (CampaignBlock cascades); a draft has no deliveries
    if refusal is not None:  # raised after the commit, so that the refusal stays on the record
        raise refusal


def campaign_withdraw(*, actor, campaign_id: int) -> Campaign:
    """Take a submitted campaign back before it is reviewed: a draft again, to change and submit anew. Its author or
    an administrator only. Audited as campaign.withdrawn (submitted -> draft)."""
    refusal = None
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != Campaign.Status.SUBMITTED:
            refusal = ValidationError(
                _("Only a campaign waiting for approval can be withdrawn; this one is %(status)s.")
                % {"status": campaign.get_status_display().lower()}
            )
            _refuse(actor, campaign, attempted=REFUSED_WITHDRAW, reason="status")
        elif not _author_or_administrator(actor, campaign):
            refusal = PermissionDenied(_("Only the campaign\u2019s author or an administrator may withdraw it."))
            _refuse(actor, campaign, attempted=REFUSED_WITHDRAW, reason="not_author")
        else:
            campaign_move(campaign, actor=actor, to=Campaign.Status.DRAFT, action=actions.CAMPAIGN_WITHDRAWN)
    if refusal is not None:
        raise refusal
    return campaign


def may_delete(user, campaign: Campaign) -> bool:
    """Whether the page offers "Delete" (the service decides again)."""
    return (
        campaign.status == Campaign.Status.DRAFT
        and campaign.kind == Campaign.Kind.CAMPAIGN
        and _author_or_administrator(user, campaign)
    )


def may_withdraw(user, campaign: Campaign) -> bool:
    return campaign.status == Campaign.Status.SUBMITTED and _author_or_administrator(user, campaign)
