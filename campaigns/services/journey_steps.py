"""The campaigns that hold a journey's send steps (Campaign.Kind.JOURNEY_STEP, ADR 0016). Their content is written,
checked and rendered exactly as a campaign's; their deliveries are created one by one by the journey scanner and
sent by the one sender. They follow their journey version: a draft while it is written, "sending" once it is
approved (the sender claims their deliveries, the reconciler re-wakes them), paused and cancelled with it.

Each function runs inside the caller's transaction (the journey service's): a version's approval and its step
campaigns opening commit together. Campaign rows are locked in primary-key order, as everywhere.
"""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext

from audit import actions
from campaigns.models import Campaign, ContentBlock, Delivery, EmailTemplate
from campaigns.services.lifecycle import campaign_create, campaign_deliveries_cancel, campaign_move
from campaigns.tasks import campaign_dispatch_task
from consent.models import Purpose


def journey_step_campaign_create(
    *,
    actor,
    name: str,
    purpose: Purpose,
    subject: str,
    body_text: str,
    template: EmailTemplate | None = None,
    blocks: list[ContentBlock] | tuple = (),
) -> Campaign:
    """A draft step campaign (content checked as a campaign's at creation, and again when its version is
    submitted)."""
    campaign = campaign_create(
        actor=actor, name=name, purpose=purpose, subject=subject, body_text=body_text, template=template, blocks=blocks
    )
    Campaign.objects.filter(pk=campaign.pk).update(kind=Campaign.Kind.JOURNEY_STEP)
    campaign.kind = Campaign.Kind.JOURNEY_STEP
    return campaign


def journey_step_campaigns_delete(*, campaign_ids: list[int]) -> None:
    """Drop the step campaigns of a draft version being rewritten: drafts that never had a delivery."""
    campaigns = Campaign.objects.select_for_update().filter(pk__in=campaign_ids, kind=Campaign.Kind.JOURNEY_STEP)
    if any(c.status != Campaign.Status.DRAFT for c in campaigns.order_by("pk")):
        raise ValidationError(gettext("Only a draft journey version's messages can be rewritten."))
    if Delivery.objects.filter(campaign_id__in=campaign_ids).exists():
        raise ValidationError(gettext("A message that has deliveries cannot be rewritten."))
    Campaign.objects.filter(pk__in=campaign_ids).delete()


def _locked(campaign_ids: list[int]) -> list[Campaign]:
    return list(
        Campaign.objects.select_for_update()
        .filter(pk__in=campaign_ids, kind=Campaign.Kind.JOURNEY_STEP)
        .order_by("pk")
    )


def journey_step_campaigns_open(*, actor, campaign_ids: list[int], paused: bool, now) -> None:
    """The version was approved by `actor`: its step campaigns are approved and open for deliveries ("sending",
    or "paused" when the journey is paused)."""
    for campaign in _locked(campaign_ids):
        campaign_move(
            campaign,
            actor=actor,
            to=Campaign.Status.PAUSED if paused else Campaign.Status.SENDING,
            action=actions.CAMPAIGN_APPROVED,
            details={"journey_step": True},
            approved_by=actor,
            approved_at=now,
            launched_at=now,
        )


def journey_step_campaigns_pause(*, actor, campaign_ids: list[int]) -> None:
    """No more claims of their queued deliveries (a batch already claimed finishes)."""
    for campaign in _locked(campaign_ids):
        if campaign.status == Campaign.Status.SENDING:
            campaign_move(campaign, actor=actor, to=Campaign.Status.PAUSED, action=actions.CAMPAIGN_PAUSED)


def journey_step_campaigns_resume(*, actor, campaign_ids: list[int]) -> None:
    for campaign in _locked(campaign_ids):
        if campaign.status == Campaign.Status.PAUSED:
            campaign_move(campaign, actor=actor, to=Campaign.Status.SENDING, action=actions.CAMPAIGN_RESUMED)
            transaction.on_commit(lambda pk=campaign.pk: campaign_dispatch_task.delay(pk))


def journey_step_campaigns_cancel(*, actor, campaign_ids: list[int]) -> int:
    """The journey is stopped: every queued delivery of its steps is blocked (campaign_cancelled) and the step
    campaigns are cancelled. Returns how many deliveries were blocked."""
    blocked = 0
    for campaign in _locked(campaign_ids):
        if campaign.status in (Campaign.Status.SENDING, Campaign.Status.PAUSED):
            count = campaign_deliveries_cancel(campaign_id=campaign.pk)
            blocked += count
            campaign_move(
                campaign,
                actor=actor,
                to=Campaign.Status.CANCELLED,
                action=actions.CAMPAIGN_CANCELLED,
                details={"blocked": count, "journey_step": True},
            )
    return blocked
