"""Thin Celery tasks: they wake the journey engine and the sender; the database holds the truth. Each is safe to
run twice, at once on several workers (the engine takes its rows FOR UPDATE SKIP LOCKED)."""
from celery import shared_task

from campaigns.sending.dispatch import TransientSendError, delivery_dispatch_batch
from journeys.engine.intake import events_route
from journeys.engine.steps import journey_steps_advance

# One task runs at most this many scanner passes, then leaves the rest to the next wake (beat every few seconds).
_PASSES_PER_TASK = 200


@shared_task(name="journeys.tasks.journey_advance_task")
def journey_advance_task() -> None:
    """Route new events, then run the steps that are due, pass after pass while there are some; wake the sender
    for each step campaign that got messages."""
    while events_route()[0]:
        pass
    woken: set[int] = set()
    for _ in range(_PASSES_PER_TASK):
        taken, campaigns = journey_steps_advance()
        for campaign_id in campaigns - woken:
            journey_step_dispatch_task.delay(campaign_id)
        woken |= campaigns
        if not taken:
            break


@shared_task(
    name="journeys.tasks.journey_step_dispatch_task",
    autoretry_for=(TransientSendError,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=None,
)
def journey_step_dispatch_task(campaign_id: int) -> None:
    """Send a step campaign's queued messages through the one sender (campaigns.sending.dispatch)."""
    while delivery_dispatch_batch(campaign_id=campaign_id):
        pass

