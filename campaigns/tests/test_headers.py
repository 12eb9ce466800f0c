"""R-CANSPAM-HEADERS: truthful From, Reply-To and routing headers; a subject that is not deceptive."""
from email import message_from_bytes
from email.policy import default

import pytest
from django.test import override_settings

from campaigns.content import content_of, content_problems, subject_problems
from campaigns.messages import CampaignRender
from campaigns.models import Delivery
from campaigns.services import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "subject", ["Re: your visit", "RE: Flu shots", "Fwd: Clinic news", "FW: offer", "  re [2]: follow-up", "AW: Termin"]
)
def test_r_canspam_headers_a_subject_dressed_as_a_reply_or_forward_is_refused(subject):
    """R-CANSPAM-HEADERS: a subject pretending to continue a conversation is deceptive and cannot be submitted."""
    assert [problem.code for problem in subject_problems(subject)] == ["subject_deceptive"]


@pytest.mark.parametrize("subject", ["Flu shots this week", "Regarding your refill", "Reminder: clinic hours", "FWD"])
def test_r_canspam_headers_an_ordinary_subject_passes(subject):
    assert subject_problems(subject) == []


def test_r_canspam_headers_submit_refuses_a_deceptive_subject():
    """R-CANSPAM-HEADERS: content_problems (what submit checks) lists the deceptive subject."""
    campaign = campaign_approved_make(purpose=purpose_make())
    campaign.subject = "Re: your appointment"
    assert "subject_deceptive" in [problem.code for problem in content_problems(content_of(campaign))]


@override_settings(
    DEFAULT_FROM_EMAIL="Riverside Health <news@riverside-health.example>",
    HIPAAMAIL_REPLY_TO="Riverside Health Outreach <outreach@riverside-health.example>",
)
def test_r_canspam_headers_from_and_reply_to_name_the_organisation():
    """R-CANSPAM-HEADERS: the message's From and the envelope sender are the organisation's configured address,
    Reply-To its monitored address, and the Message-ID names the delivery under our own domain."""
    purpose = purpose_make()
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    delivery = Delivery.objects.get(campaign=campaign, patient=patient)

    message = CampaignRender(campaign=campaign).assemble(delivery_id=delivery.pk, to_address=patient.email)
    parsed = message_from_bytes(message.raw, policy=default)

    assert parsed["From"] == "Riverside Health <news@riverside-health.example>"
    assert message.from_address == "news@riverside-health.example"
    assert parsed["Reply-To"] == "Riverside Health Outreach <outreach@riverside-health.example>"
    assert parsed["To"] == patient.email
    assert parsed["Subject"] == campaign.subject
    assert parsed["Message-ID"] == delivery.message_id or parsed["Message-ID"].startswith(f"<delivery-{delivery.pk}@")
