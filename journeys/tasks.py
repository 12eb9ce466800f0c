"""Thin Celery tasks: they wake the journey engine and the sender; the database holds the truth. Each is safe to
run twice, at once on several workers (the engine takes its rows FOR UPDATE SKIP LOCKED)."""
from celery import shared_task

from campaigns.tasks import campaign_dispatch_task
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
            # The campaigns' own dispatch task (it never marks a step campaign sent), on the transactional queue:
            # triggered mail never waits behind a blast.
            campaign_dispatch_task.apply_async(args=[campaign_id], queue="transactional")
        woken |= campaigns
        if not taken:
            break

