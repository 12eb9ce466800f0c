"""Beat jobs of the api app. Run by Celery beat (settings.CELERY_BEAT_SCHEDULE); nothing imports this module
(import-linter) but its tests."""
from __future__ import annotations

from celery import shared_task

from api.middleware import idempotency_records_prune
from api.tasks import webhook_delivery_enqueue
from api.webhook_delivery import webhook_deliveries_due


@shared_task(name="api.tasks.webhook_deliveries_due_task")
def webhook_deliveries_due_task() -> int:
    """Every 10 seconds: wake a worker for each due webhook delivery (first attempts whose task was lost, and
    retries whose back-off has passed)."""
    return len(webhook_deliveries_due_enqueue())


def webhook_deliveries_due_enqueue() -> list[int]:
    """Enqueue an attempt of every pending, due, unclaimed delivery; returns their ids. A duplicate wake-up is
    harmless: the attempt needs the lease."""
    due = webhook_deliveries_due()
    for delivery_id in due:
        webhook_delivery_enqueue(delivery_id)
    return due


@shared_task(name="api.tasks.idempotency_records_prune_task")
def idempotency_records_prune_task() -> int:
    """Every hour: forget the answers kept for Idempotency-Keys older than a day."""
    return idempotency_records_prune()
