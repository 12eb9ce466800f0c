"""Thin Celery tasks of the audit app, run by Celery beat (settings.CELERY_BEAT_SCHEDULE). R-SEC-INTEGRITY,
R-SEC-AUDIT: the chain's head is signed every hour and the whole chain is verified every night, so that a change
to the trail is found without anyone having to remember to look.

Both go to the default queue; each is safe to run twice (a second checkpoint or a second verify is harmless).
"""
import logging

from celery import shared_task

from audit import checkpoints, services

logger = logging.getLogger(__name__)

# One stream, not a pool of processes: a Celery pool child is a poor place to fork more processes, and a nightly
# walk can take its time (one process walks millions of events in minutes). `manage.py audit_verify --workers`
# is there for a walk someone is waiting for.
VERIFY_WORKERS = 1


@shared_task(name="audit.tasks.audit_checkpoint_task")
def audit_checkpoint_task() -> None:
    """Seal what is committed and sign the chain head (what `manage.py audit_checkpoint` does). The checkpoint's
    line goes to the worker's log too: one more copy outside the database. It holds no PHI (sequence, head hash,
    key id, signature)."""
    checkpoint = services.audit_checkpoint_create()
    logger.info("audit: checkpoint %s", checkpoints.checkpoint_line(checkpoint))


@shared_task(name="audit.tasks.audit_verify_task")
def audit_verify_task() -> bool:
    """Verify the whole chain and its signed checkpoints, then every registered check of other apps' records
    against the sealed trail (audit.verification: the deliveries, for one), record the outcome (what
    `manage.py audit_verify` does), and at a break or a mismatch alert every compliance officer and
    administrator. Returns whether the chain is intact and every check found its records as sealed."""
    verification = services.audit_chain_verify(workers=VERIFY_WORKERS)
    result = verification.result
    if verification.ok:
        logger.info(
            "audit: chain intact through sequence %d (%d events, %d checkpoint(s) matched, %d not sealed yet)",
            result.last_sequence,
            result.events,
            result.checkpoints_checked,
            verification.unsealed,
        )
        for check in verification.checks:
            logger.info("audit: %s", check.summary())
        return True
    services.audit_chain_break_alert(result=result, checks=verification.checks)
    return False
