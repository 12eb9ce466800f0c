"""Thin Celery tasks: they wake the sender; the database holds the truth. Each is safe to run twice."""
from celery import shared_task

from campaigns.sending.dispatch import TransientSendError, campaign_finish_if_done, delivery_dispatch_batch


@shared_task(
    name="campaigns.tasks.campaign_dispatch_task",
    autoretry_for=(TransientSendError,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=None,
)
def campaign_dispatch_task(campaign_id: int) -> None:
    while delivery_dispatch_batch(campaign_id=campaign_id):
        pass
    campaign_finish_if_done(campaign_id=campaign_id)
