"""Beat jobs of the journeys (CELERY_BEAT_SCHEDULE): the date, segment and expiry scans every ten minutes. The
scanner itself (journeys.tasks.journey_advance_task) runs every few seconds by name. Nothing imports this module
(import-linter)."""
from celery import shared_task

from journeys.engine.triggers import triggers_scan
from journeys.tasks import journey_advance_task


@shared_task(name="journeys.tasks.journey_triggers_scan_task")
def journey_triggers_scan_task() -> None:
    """Enrol on dates, segment entries and nearing expiries, then run the new enrolments' first steps."""
    if triggers_scan():
        journey_advance_task.delay()
