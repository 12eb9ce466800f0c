"""Two Celery queues: "transactional" for the mail a person is waiting for (a patient's sign-in code, an
invitation, the copy of a signed form), "campaigns" for the rest, so a big campaign never delays a sign-in code.
The transactional mail tasks retry a mail server's temporary failure and never log an address (R-NO-PHI-LEAK).
campaigns/tests/test_real_worker.py shows the separation with real workers."""
import base64
import json
import logging
import smtplib
from unittest import mock

import pytest
from celery import current_app as celery_app
from django.conf import settings
from django.core import mail
from kombu.exceptions import OperationalError

from audit.models import AuditEvent
from consent import notifications
from consent import tasks as consent_tasks
from consent.models import Invitation
from consent.services import portal, signing
from consent.tests.factories import form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

TRANSACTIONAL = {
    "consent.tasks.sign_in_code_send_task",
    "consent.tasks.invitation_send_task",
    "consent.tasks.authorization_copy_send_task",
    "campaigns.tasks.notice_mail_send_task",
}


def _queue_of(task_name: str) -> str:
    return celery_app.amqp.router.route({}, task_name, args=(), kwargs={})["queue"].name


def _our_tasks() -> set[str]:
    celery_app.loader.import_default_modules()
    return {name for name in celery_app.tasks if name.split(".")[0] in ("campaigns", "consent", "audit", "hipaamail")}


def test_transactional_mail_tasks_go_to_the_transactional_queue_and_everything_else_to_campaigns():
    names = _our_tasks()

    assert TRANSACTIONAL <= names
    assert {name for name in names if _queue_of(name) == "transactional"} == TRANSACTIONAL
    assert {_queue_of(name) for name in names - TRANSACTIONAL} == {"campaigns"}
    assert _queue_of("campaigns.tasks.campaign_dispatch_task") == "campaigns"


def test_the_demo_and_the_real_worker_test_consume_both_queues():
    run_demo = (settings.BASE_DIR / "scripts" / "run-demo").read_text()
    # The real-worker tests (test_real_worker.py, test_journey_browser.py) start workers through this module.
    worker_test = (settings.BASE_DIR / "campaigns" / "tests" / "worker.py").read_text()

    assert "-Q campaigns " in run_demo and "-Q transactional " in run_demo
    assert '"campaigns,transactional"' in worker_test


@pytest.fixture
def broker(settings):
    """The real broker (Redis): the transactional queue emptied before and after."""
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs Redis (CELERY_BROKER_URL=redis://...)")
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("transactional")
    settings.HIPAAMAIL_TRANSACTIONAL_MAIL_EAGER = False
    yield client
    client.delete("transactional")


def test_r_no_phi_leak_a_sign_in_code_is_published_to_the_transactional_queue_sealed(broker):
    """R-NO-PHI-LEAK: what the broker holds names the patient by id; the code is sealed, the address absent;
    the message expires with the code."""
    patient = patient_make(email="margaret@example.org")
    store: dict = {}

    assert portal.patient_code_issue(store=store, patient=patient) is True

    assert mail.outbox == []  # a worker sends it, not the web request
    assert broker.llen("transactional") == 1
    raw = broker.lindex("transactional", 0)
    envelope = json.loads(raw)
    body = json.loads(base64.b64decode(envelope["body"]))
    assert envelope["headers"]["task"] == "consent.tasks.sign_in_code_send_task"
    assert envelope["headers"]["expires"] is not None
    patient_id, sealed, minutes = body[0]
    assert (patient_id, minutes) == (patient.pk, 10)
    assert b"margaret" not in raw and sealed.startswith("hm1.")
    # The worker's side: the task unseals the code and sends it.
    assert consent_tasks.sign_in_code_send_task.apply(args=body[0]).get() is True
    (message,) = mail.outbox
    assert message.to == ["margaret@example.org"]
    assert portal.patient_code_verify(store=store, code=message.body.split("Your code is: ")[1][:6])[0] == "verified"


def test_an_invitation_is_published_after_commit_to_the_transactional_queue(broker, django_capture_on_commit_callbacks):
    patient, purpose = patient_make(), purpose_make()
    form_published_make(purpose)

    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = signing.invitation_create(
            actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel=Invitation.Channel.EMAIL
        )

    raw = broker.lindex("transactional", 0)
    assert broker.llen("transactional") == 1 and token.encode() not in raw
    assert json.loads(raw)["headers"]["task"] == "consent.tasks.invitation_send_task"


def _smtp_failures(*errors):
    """A side effect for a notifications send function: raise each error in turn, then send for real."""
    real = {}

    def side_effect(**kwargs):
        if errors_left:
            raise errors_left.pop(0)
        return real["send"](**kwargs)

    errors_left = list(errors)
    return side_effect, real


def test_a_temporary_mail_failure_is_retried_and_the_code_still_arrives(caplog):
    patient = patient_make(email="retry.me@example.org")
    side_effect, real = _smtp_failures(
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
        smtplib.SMTPRecipientsRefused({"retry.me@example.org": (450, b"4.2.0 try later")}),
    )
    real["send"] = notifications.sign_in_code_send
    caplog.set_level(logging.DEBUG)

    with mock.patch.object(notifications, "sign_in_code_send", side_effect=side_effect) as send:
        assert portal.patient_code_issue(store={}, patient=patient) is True

    assert send.call_count == 3
    assert [m.to for m in mail.outbox] == [["retry.me@example.org"]]
    assert "retry.me" not in caplog.text


@pytest.mark.parametrize(
    "error",
    [
        smtplib.SMTPRecipientsRefused({"gone@example.org": (550, b"5.1.1 <gone@example.org> unknown")}),
        smtplib.SMTPDataError(554, b"5.7.1 rejected for gone@example.org"),
    ],
    ids=["rcpt-550", "data-554"],
)
def test_a_permanent_refusal_is_not_retried_and_not_logged_with_the_address(caplog, error):
    patient = patient_make(email="gone@example.org")
    caplog.set_level(logging.DEBUG)

    with mock.patch.object(notifications, "sign_in_code_send", side_effect=error) as send:
        portal.patient_code_issue(store={}, patient=patient)

    assert send.call_count == 1
    assert mail.outbox == []
    assert "sign_in_code_send_task gave up after 1 tries" in caplog.text
    assert "gone@" not in caplog.text


def test_a_signed_copy_that_never_goes_is_audited_as_failed_after_the_retries(caplog, settings, tmp_path):
    """R-AUTH-COPY: the copy's task retries a server that keeps deferring, then records the failure; the
    signature stands and nothing logged names the patient."""
    settings.MEDIA_ROOT = tmp_path
    patient = patient_make(email="copy.me@example.org")
    purpose = purpose_make()
    form_version = form_published_make(purpose)
    from consent.documents import form_text, text_hash

    caplog.set_level(logging.DEBUG)
    error = smtplib.SMTPResponseException(421, b"4.3.2 copy.me@example.org service not available")
    with mock.patch.object(notifications, "authorization_copy_send", side_effect=error) as send:
        authorization = signing.authorization_sign(
            patient_id=patient.pk, form_id=form_version.pk, shown_text_hash=text_hash(form_text(form_version)),
            signature_name="Copy Me", intent_confirmed=True, signed_by_representative=False,
        )

    assert send.call_count == 1 + consent_tasks.MAIL_RETRIES
    assert mail.outbox == []
    actions = set(AuditEvent.objects.filter(object_id=str(authorization.pk)).values_list("action", flat=True))
    assert "authorization.pdf_email_failed" in actions and "authorization.pdf_emailed" not in actions
    assert "copy.me" not in caplog.text


def test_a_signed_copy_that_cannot_be_queued_leaves_the_signature_standing(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    patient = patient_make()
    form_version = form_published_make(purpose_make())
    from consent.documents import form_text, text_hash

    with mock.patch.object(signing, "authorization_copy_queue", side_effect=OperationalError("broker away")):
        authorization = signing.authorization_sign(
            patient_id=patient.pk, form_id=form_version.pk, shown_text_hash=text_hash(form_text(form_version)),
            signature_name="Pat Doe", intent_confirmed=True, signed_by_representative=False,
        )

    assert authorization.pk is not None
    assert AuditEvent.objects.filter(action="authorization.pdf_email_failed", object_id=str(authorization.pk)).exists()
