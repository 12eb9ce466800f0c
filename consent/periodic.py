"""Beat jobs: renewal invitations, re-run lost imports, the nightly check of the live counts' summary. Run by Celery
beat; nothing imports this module (import-linter)."""
from __future__ import annotations

import logging

from celery import shared_task

from consent.selectors.patients import patient_import_unfinished_list
from consent.selectors.standing import authorization_standing_mismatch_counts
from consent.services import renewals
from consent.services.standing import count_changes_prune
from consent.tasks import patient_import_run_enqueue


@shared_task(name="consent.tasks.patient_import_rewake_task")
def patient_import_rewake_task() -> None:
    """Every few minutes: run again any started import whose task was lost (the run returns at once while
    another holds the import)."""
    patient_import_rewake()


@shared_task(name="consent.tasks.authorization_renewals_invite_task")
def authorization_renewals_invite_task() -> None:
    """Daily: invite patients whose authorization ran out by its date to sign again (never after a revocation)."""
    renewals.authorization_renewals_invite()


logger = logging.getLogger(__name__)


@shared_task(name="consent.tasks.authorization_standing_check_task")
def authorization_standing_check_task() -> dict[str, int]:
    """Nightly: compare the authorizations' standing (the live counts' summary, ADR 0021) with the evidence. A
    difference is a defect to look into, logged as an error (and so reported to Sentry when a DSN is set) with
    counts only; sends are not affected (they read the evidence), and `manage.py authorization_standing --rebuild`
    mends the counts."""
    wrong = authorization_standing_mismatch_counts()
    if wrong["standings"] or wrong["patients"]:
        logger.error(
            "the live counts' summary differs from the evidence: %s standing(s), %s patient count(s); "
            "run manage.py authorization_standing --rebuild",
            wrong["standings"],
            wrong["patients"],
        )
    return wrong


@shared_task(name="consent.tasks.count_changes_prune_task")
def count_changes_prune_task() -> int:
    """Hourly: drop the live counts' change log older than a day (consent.services.standing.count_changes_prune)."""
    return count_changes_prune()


def patient_import_rewake() -> list[int]:
    """The reconciler (Celery beat): enqueue a run for every unfinished import. A run finds the import locked
    by one in progress and returns; otherwise it does the work the lost task did not. Returns the ids."""
    unfinished = patient_import_unfinished_list()
    for patient_import_id in unfinished:
        patient_import_run_enqueue(patient_import_id)
    return unfinished
