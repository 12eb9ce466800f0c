"""Thin Celery tasks: they wake the sender; the database holds the truth. Each is safe to run twice."""
from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError

from campaigns import bounces, selectors, services


@shared_task(
    name="campaigns.tasks.campaign_dispatch_task",
    autoretry_for=(services.TransientSendError,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=None,
)
def campaign_dispatch_task(campaign_id: int) -> None:
    while services.delivery_dispatch_batch(campaign_id=campaign_id):
        pass
    services.campaign_finish_if_done(campaign_id=campaign_id)


@shared_task(name="campaigns.tasks.campaign_launch_due_task")
def campaign_launch_due_task() -> None:
    """Launch each scheduled campaign whose time has come. One that was launched meanwhile (the button) is
    skipped; one whose content no longer passes its checks goes back to its author (campaign_launch_refuse)."""
    for campaign_id in selectors.campaign_due_list():
        try:
            services.campaign_launch(actor=None, campaign_id=campaign_id)
        except services.CampaignAlreadyLaunched:
            continue
        except ValidationError as error:
            services.campaign_launch_refuse(campaign_id=campaign_id, codes=[e.code or "invalid" for e in error.error_list])


@shared_task(name="campaigns.tasks.campaign_rewake_task")
def campaign_rewake_task() -> None:
    """The reconciler: a campaign with queued deliveries gets a worker again (killed worker, lost message); a
    campaign with nothing left queued that still reads "sending" is marked sent (campaign_finish_if_done checks
    again under the campaign's lock, so racing the worker that is finishing it is harmless)."""
    for campaign_id in selectors.campaign_unfinished_list():
        campaign_dispatch_task.delay(campaign_id)
    for campaign_id in selectors.campaign_unmarked_sent_list():
        services.campaign_finish_if_done(campaign_id=campaign_id)


@shared_task(name="campaigns.tasks.bounces_read_task")
def bounces_read_task() -> None:
    """Every few minutes when BOUNCE_MAILBOX is set: apply the bounce mailbox's reports, then delete them."""
    if settings.HIPAAMAIL_BOUNCE_MAILBOX:
        bounces.bounce_mailbox_read(path=Path(settings.HIPAAMAIL_BOUNCE_MAILBOX), remove=True)
