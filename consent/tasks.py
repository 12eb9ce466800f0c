"""Thin Celery tasks of the consent app: they call services, which hold the rules. Each is safe to run twice.

The mail a patient is waiting for (a sign-in code, an invitation, the copy of a signed form) is sent by the tasks
at the end, which run on the "transactional" queue (settings.CELERY_TASK_ROUTES) so that no campaign delays them.
They retry a mail server's temporary failure with exponential backoff and give up on a permanent refusal.
"""
from __future__ import annotations

import logging
import smtplib

from celery import shared_task
from django.conf import settings

from audit import actions
from audit.services import audit_record
from consent import crypto, notifications
from consent.models import Authorization, Invitation, Patient
from consent.patient_import.write import patient_import_run


def _queue(task, *, args: list, expires: int | None = None) -> None:
    if settings.HIPAAMAIL_TRANSACTIONAL_MAIL_EAGER:
        task.apply(args=args).get()  # the test suite: in-process, retries included; errors raised here
    else:
        task.apply_async(args=args, expires=expires)  # routed to the "transactional" queue


def sign_in_code_queue(*, patient_id: int, code: str, minutes: int) -> None:
    """Queue the sign-in code's email; a worker that picks it up after the code expired drops it."""
    _queue(sign_in_code_send_task, args=[patient_id, crypto.encrypt(code), minutes], expires=minutes * 60)


def invitation_queue(*, invitation_id: int, url: str) -> None:
    _queue(invitation_send_task, args=[invitation_id, crypto.encrypt(url)])


def authorization_copy_queue(*, authorization_id: int) -> None:
    _queue(authorization_copy_send_task, args=[authorization_id])


logger = logging.getLogger(__name__)


# 5 s, 10 s, 20 s ... 160 s: about five minutes in all, inside a sign-in code's ten-minute lifetime.
MAIL_RETRIES = 6


MAIL_RETRY_FIRST_DELAY = 5


@shared_task(name="consent.tasks.patient_import_run_task")
def patient_import_run_task(patient_import_id: int) -> None:
    """Write a started patient import whole or not at all; a finished import is left as it is."""
    patient_import_run(patient_import_id=patient_import_id)


class MailDeferred(Exception):
    """The mail server did not take a transactional message this time; the task retries. It carries the
    error's type only: an SMTP error's text names the recipient, and task errors are logged (R-NO-PHI-LEAK)."""


def _refused_for_good(error: Exception) -> bool:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(error, smtplib.SMTPResponseException):
        return 500 <= error.smtp_code < 600
    return False


def _mail_with_retry(task, send) -> bool:
    """Run `send()`. True once the mail server took the message; False when it refused it for good or the
    retries ran out; otherwise the task is retried later (raises celery's Retry)."""
    failure = None
    try:
        send()
    except (smtplib.SMTPException, OSError) as error:
        failure = error
    if failure is None:
        return True
    # Outside the except block on purpose: the retry's exception must not chain the SMTP error and its text.
    if _refused_for_good(failure) or task.request.retries >= task.max_retries:
        logger.error("%s gave up after %s tries (%s)", task.name, task.request.retries + 1, type(failure).__name__)
        return False
    raise task.retry(
        exc=MailDeferred(type(failure).__name__), countdown=MAIL_RETRY_FIRST_DELAY * 2**task.request.retries
    )


@shared_task(name="consent.tasks.sign_in_code_send_task", bind=True, max_retries=MAIL_RETRIES)
def sign_in_code_send_task(self, patient_id: int, sealed_code: str, minutes: int) -> bool:
    """Email a patient's sign-in code. The code travels sealed (consent.crypto) so the broker holds no usable
    secret; the message is queued with an expiry, so a code is never delivered after it stopped working."""
    patient = Patient.objects.get(pk=patient_id)
    code = crypto.decrypt(sealed_code)
    return _mail_with_retry(
        self, lambda: notifications.sign_in_code_send(patient=patient, code=code, minutes=minutes)
    )


@shared_task(name="consent.tasks.invitation_send_task", bind=True, max_retries=MAIL_RETRIES)
def invitation_send_task(self, invitation_id: int, sealed_url: str) -> bool:
    """Email an invitation to sign. Its link's token is stored nowhere but in the sealed URL this task gets."""
    invitation = Invitation.objects.select_related("patient", "purpose").get(pk=invitation_id)
    url = crypto.decrypt(sealed_url)
    return _mail_with_retry(
        self, lambda: notifications.invitation_send(invitation=invitation, patient=invitation.patient, url=url)
    )


@shared_task(name="consent.tasks.authorization_copy_send_task", bind=True, max_retries=MAIL_RETRIES)
def authorization_copy_send_task(self, authorization_id: int) -> bool:
    """Email the patient the PDF of what they signed (R-AUTH-COPY) and audit whether it went. A failure does not
    undo the signature: the copy stays downloadable in the portal, and the audit trail says it was not sent."""
    authorization = Authorization.objects.select_related("patient", "purpose").get(pk=authorization_id)
    sent = _mail_with_retry(
        self,
        lambda: notifications.authorization_copy_send(authorization=authorization, patient=authorization.patient),
    )
    audit_record(
        actor_role=actions.PATIENT,
        action=actions.AUTHORIZATION_PDF_EMAILED if sent else actions.AUTHORIZATION_PDF_EMAIL_FAILED,
        object_type="authorization",
        object_id=authorization.pk,
        patient_id=authorization.patient_id,
    )
    return sent


def patient_import_run_enqueue(patient_import_id: int) -> None:
    """Queue a run of a started import (called on commit by consent.services.imports and by the reconciler)."""
    patient_import_run_task.delay(patient_import_id)
