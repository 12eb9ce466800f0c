"""Thin Celery tasks: they wake the sender; the database holds the truth. Each is safe to run twice."""
from celery import shared_task

from campaigns import selectors, services


@shared_task(
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


@shared_task
def campaign_launch_due_task() -> None:
    for campaign_id in selectors.campaign_due_list():
        services.campaign_launch(actor=None, campaign_id=campaign_id)


@shared_task
def campaign_rewake_task() -> None:
    """The reconciler: a campaign with queued deliveries gets a worker again (killed worker, lost message)."""
    for campaign_id in selectors.campaign_unfinished_list():
        campaign_dispatch_task.delay(campaign_id)
