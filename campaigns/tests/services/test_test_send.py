"""The test send goes through the one sender's path (issue 11, item 6): the transport that the sender uses
(`campaigns.sending.dispatch.preview_message_send_unchecked`, HIPAAMAIL_TRANSPORT), not a mail backend of its own."""
import smtplib
from unittest import mock

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.sending import bounces, dispatch
from campaigns.sending.dispatch import preview_message_send_unchecked
from campaigns.sending.messages import message_id_domain
from campaigns.services import library as services_content
from campaigns.tests.factories import campaign_make
from campaigns.tests.smtp_server import smtp_sink
from consent.tests.factories import purpose_make

pytestmark = pytest.mark.django_db


def test_r_send_covered_the_test_send_reaches_the_mail_server_through_the_senders_transport(settings):
    """R-SEND-COVERED: with the sender configured for SMTP, the test message reaches that SMTP server by the
    sender's own path (one call of preview_message_send_unchecked), to the actor's verified address only; Django's
    mail backend is not used."""
    marketer = staff_make(role="marketer")
    campaign = campaign_make(purpose=purpose_make(), author=marketer)

    with smtp_sink() as sink:
        settings.HIPAAMAIL_TRANSPORT = "smtp"
        settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK = True
        with mock.patch.object(dispatch, "preview_message_send_unchecked", wraps=preview_message_send_unchecked) as sender:
            address = services_content.campaign_test_send(actor=marketer, campaign_id=campaign.pk)
        records = sink.records

    assert address == marketer.email
    assert sender.call_count == 1
    assert [(record.recipients, record.subject) for record in records] == [((marketer.email,), "[TEST] News for you")]
    assert mail.outbox == []
    assert AuditEvent.objects.filter(action="campaign.test_sent", actor=marketer).count() == 1
    # Its own Message-ID under the sending domain, never one the bounce reader takes for a delivery's.
    (record,) = records
    assert record.message_id.startswith("<test-") and record.message_id.endswith(f"@{message_id_domain()}>")
    assert bounces.delivery_id_from_message_id(record.message_id) is None


def test_r_sec_audit_a_test_send_the_mail_server_refuses_is_audited_and_sends_nothing():
    """R-SEC-AUDIT: the transport raises (the server went away); the staff member is told, the failure's kind is
    audited with ids only, and no test_sent event claims otherwise."""
    marketer = staff_make(role="marketer")
    campaign = campaign_make(purpose=purpose_make(), author=marketer)

    with (
        mock.patch("campaigns.sending.transport.DjangoTransport.send", side_effect=smtplib.SMTPServerDisconnected("gone")),
        pytest.raises(ValidationError, match="did not take it"),
    ):
        services_content.campaign_test_send(actor=marketer, campaign_id=campaign.pk)

    assert mail.outbox == []
    failed = AuditEvent.objects.get(action="campaign.test_send_failed")
    assert (failed.actor_id, failed.object_id) == (marketer.pk, str(campaign.pk))
    assert failed.details == {"email_address": marketer.emailaddress_set.get().pk, "error": "SMTPServerDisconnected"}
    assert not AuditEvent.objects.filter(action="campaign.test_sent").exists()
