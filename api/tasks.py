"""Thin Celery tasks of the api app: they call the webhook sender (api.webhook_delivery), which holds the rules.
Each is safe to run twice: an attempt needs the delivery's lease, so a duplicate task finds nothing to do.

The delivery task runs on the "transactional" queue (settings.CELERY_TASK_ROUTES): what a CRM is waiting to hear
never waits behind a campaign's dispatch."""
from __future__ import annotations

import logging

from celery import shared_task

from api.webhook_delivery import webhook_delivery_attempt

logger = logging.getLogger(__name__)


@shared_task(name="api.tasks.webhook_deliver_task")
def webhook_deliver_task(delivery_id: int) -> str:
    """One attempt of one webhook delivery (claim, sign, POST, record)."""
    return webhook_delivery_attempt(delivery_id=delivery_id)


def webhook_delivery_enqueue(delivery_id: int) -> None:
    """Wake a worker for this delivery. Called after the commit that created (or re-armed) it: a broker that does
    not answer must not fail the caller, whose change is committed; the beat job (api.periodic) enqueues every
    due delivery again within seconds, so an outage only delays."""
    try:
        webhook_deliver_task.apply_async(args=[delivery_id])
    except Exception as error:  # noqa: BLE001 - any broker error; the outbox row is the truth
        logger.warning("webhook delivery %s not enqueued (%s); the beat job will", delivery_id, type(error).__name__)
