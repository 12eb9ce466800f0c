"""The dispatch task backs off only when a batch made no progress (found by campaigns/tests/test_smtp_faults.py):
a server that ends every session with 421 after a few messages, as Amazon SES does, had the task back off after
each session (5, 10, 20, 40 s...), so a campaign took minutes for what its server took in a second."""
from unittest import mock

import pytest

from campaigns.models import Delivery
from campaigns.sending.dispatch import TransientSendError
from campaigns.services.launch import campaign_launch
from campaigns.tasks import campaign_dispatch_task
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.smtp_faults import SmtpFaults, faulty_smtp_sink
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _launched(n: int):
    purpose = purpose_make()
    for _ in range(n):
        authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    return campaign


def _use(settings, sink) -> None:
    settings.HIPAAMAIL_TRANSPORT = "smtp"
    settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK = True
    settings.HIPAAMAIL_SEND_BATCH_SIZE = 4


def test_r_send_covered_a_421_after_a_sessions_limit_goes_on_at_once_in_a_new_session(settings):
    """R-SEND-COVERED: sessions of 2 messages, batches of 4: each batch's session ends with 421 after its second
    message, and the task goes on with the next batch at once (no retry raised), until every message is sent
    exactly once, none flagged."""
    campaign = _launched(7)
    with faulty_smtp_sink(SmtpFaults(session_limit=2)) as sink:
        _use(settings, sink)
        campaign_dispatch_task(campaign.pk)  # called directly: a retry would raise here

    assert {r.code for r in sink.handler.refusals} == {421}
    assert set(Delivery.objects.filter(campaign=campaign).values_list("status", "possible_duplicate")) == {
        (Delivery.Status.SENT, False)
    }
    assert len(sink.records) == 7 and len({record.message_id for record in sink.records}) == 7
    campaign.refresh_from_db()
    assert campaign.status == "sent"


def test_a_server_that_defers_the_first_message_of_a_batch_still_gets_the_back_off(settings):
    """No progress at all (451 to every message): the task raises TransientSendError, which Celery retries with
    its back-off; nothing is sent and everything stays queued, unleased."""
    campaign = _launched(3)
    with faulty_smtp_sink(SmtpFaults(temporary_rate=1.0)) as sink:
        _use(settings, sink)
        with pytest.raises(TransientSendError) as raised:
            campaign_dispatch_task(campaign.pk)

    assert raised.value.progressed is False
    assert sink.records == [] and [r.code for r in sink.handler.refusals] == [451]
    assert set(Delivery.objects.filter(campaign=campaign).values_list("status", "lease_expires_at")) == {
        (Delivery.Status.QUEUED, None)
    }
