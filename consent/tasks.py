"""Thin Celery tasks of the consent app: they call services, which hold the rules. Each is safe to run twice."""
from celery import shared_task

from consent.services import imports, renewals


@shared_task
def patient_import_run_task(patient_import_id: int) -> None:
    """Write a started patient import whole or not at all; a finished import is left as it is."""
    imports.patient_import_run(patient_import_id=patient_import_id)


@shared_task
def authorization_renewals_invite_task() -> None:
    """Daily: invite patients whose authorization ran out by its date to sign again (never after a revocation)."""
    renewals.authorization_renewals_invite()
