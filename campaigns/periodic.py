"""Beat jobs: launch what is due, re-wake the sender, read bounces. Run by Celery beat; nothing imports this
module (import-linter)."""
from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError

from campaigns.selectors import campaigns as selectors
from campaigns.sending import bounces
from campaigns.sending.dispatch import campaign_finish_if_done
from campaigns.services.launch import CampaignAlreadyLaunched, campaign_launch, campaign_launch_refuse
from campaigns.services.unsubscribe import unsubscribe_bad_tokens_flush
from campaigns.tasks import campaign_dispatch_task


@shared_task(name="campaigns.tasks.campaign_launch_due_task")
def campaign_launch_due_task() -> None:
    """Launch each scheduled campaign whose time has come. One that was launched meanwhile (the button) is
    skipped; one whose content no longer passes its checks goes back to its author (campaign_launch_refuse)."""
    for campaign_id in selectors.campaign_due_list():
        try:
            campaign_launch(actor=None, campaign_id=campaign_id)
        except CampaignAlreadyLaunched:
            continue
        except ValidationError as error:
            campaign_launch_refuse(campaign_id=campaign_id, codes=[e.code or "invalid" for e in error.error_list])


@shared_task(name="campaigns.tasks.campaign_rewake_task")
def campaign_rewake_task() -> None:
    """The reconciler: a campaign with queued deliveries gets a worker again (killed worker, lost message); a
    campaign with nothing left queued that still reads "sending" is marked sent (campaign_finish_if_done checks
    again under the campaign's lock, so racing the worker that is finishing it is harmless)."""
    for campaign_id in selectors.campaign_unfinished_list():
        campaign_dispatch_task.delay(campaign_id)
    for campaign_id in selectors.campaign_unmarked_sent_list():
        campaign_finish_if_done(campaign_id=campaign_id)


@shared_task(name="campaigns.tasks.bounces_read_task")
def bounces_read_task() -> None:
    """Every few minutes when BOUNCE_MAILBOX is set: apply the bounce mailbox's reports, then delete them."""
    if settings.HIPAAMAIL_BOUNCE_MAILBOX:
        bounces.bounce_mailbox_read(path=Path(settings.HIPAAMAIL_BOUNCE_MAILBOX), remove=True)


@shared_task(name="campaigns.tasks.unsubscribe_bad_tokens_flush_task")
def unsubscribe_bad_tokens_flush_task() -> None:
    """Every minute: audit the ended intervals' counts of unsubscribe links that were not ours (one event each),
    so a minute with bad links and none after it is still written (campaigns.services.unsubscribe)."""
    unsubscribe_bad_tokens_flush()
