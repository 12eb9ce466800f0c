"""A hard bounce or a complaint suppresses the address for every later marketing message (R-BOUNCE-SUPPRESS)."""
from unittest import mock

import pytest
from django.core import mail

from audit.models import AuditEvent
from campaigns.models import Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from consent.models import Suppression
from consent.services.suppressions import suppression_record
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _launch_and_send(purpose):
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    return campaign


def test_r_bounce_suppress_a_550_suppresses_the_address_for_the_next_campaign(settings):
    """R-BOUNCE-SUPPRESS: the first campaign's 550 fails that delivery and suppresses the address; the next
    campaign blocks that patient as bounced at launch, even though their authorization still covers them."""
    import smtplib

    from django.core.mail.backends.locmem import EmailBackend

    purpose = purpose_make()
    bouncing = patient_make(email="gone@example.org")
    fine = patient_make(email="here@example.org")
    for patient in (bouncing, fine):
        authorization_make(patient=patient, purpose=purpose)
    real_send = EmailBackend.send_messages

    def refuse_one(self, messages):
        if messages[0].to == ["gone@example.org"]:
            raise smtplib.SMTPRecipientsRefused({"gone@example.org": (550, b"5.1.1 user unknown")})
        return real_send(self, messages)

    with mock.patch.object(EmailBackend, "send_messages", refuse_one):
        first = _launch_and_send(purpose)
    second = _launch_and_send(purpose)

    assert Delivery.objects.get(campaign=first, patient=bouncing).status == "failed"
    assert Suppression.objects.get().reason == "hard_bounce"
    assert AuditEvent.objects.get(action="suppression.recorded").details == {"reason": "hard_bounce", "smtp_code": "550"}
    blocked = Delivery.objects.get(campaign=second, patient=bouncing)
    assert (blocked.status, blocked.block_reason) == ("blocked", "bounced")
    assert [m.to for m in mail.outbox] == [["here@example.org"], ["here@example.org"]]


def test_r_bounce_suppress_the_sender_checks_suppression_at_send_time():
    """An address suppressed after launch (a complaint arrives) gets nothing: the sender checks again."""
    purpose = purpose_make()
    patient = patient_make(email="complains@example.org")
    authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)

    suppression_record(actor=None, email="Complains@Example.org", reason=Suppression.Reason.COMPLAINT)
    delivery_dispatch_batch(campaign_id=campaign.pk)

    delivery = Delivery.objects.get(campaign=campaign)
    assert (delivery.status, delivery.block_reason) == ("blocked", "suppressed")
    assert mail.outbox == []
