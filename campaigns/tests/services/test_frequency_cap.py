"""The organisation's frequency cap at a campaign's launch (ADR 0016): a patient who already had the cap's number of
marketing messages in its period gets a delivery blocked `frequency_cap`, and the report says so; treatment and
operations messages are neither counted nor capped."""
import pytest

from campaigns.models import Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from consent.models import Purpose
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _send(campaign):
    campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass


@pytest.fixture
def capped(settings):
    settings.HIPAAMAIL_FREQUENCY_CAP = 1
    settings.HIPAAMAIL_FREQUENCY_CAP_DAYS = 7


def test_a_patient_at_the_cap_is_blocked_with_frequency_cap_at_launch(capped):
    first, second = purpose_make(), purpose_make()
    tired, fresh = patient_make(), patient_make()
    for patient in (tired, fresh):
        authorization_make(patient=patient, purpose=first)
        authorization_make(patient=patient, purpose=second)
    earlier = campaign_approved_make(purpose=first)
    _send(earlier)
    Delivery.objects.filter(campaign=earlier, patient=fresh).update(created_at="2020-01-01T00:00:00Z")  # long ago

    later = campaign_approved_make(purpose=second)
    _send(later)

    outcome = dict(Delivery.objects.filter(campaign=later).values_list("patient_id", "block_reason"))
    assert outcome == {tired.pk: "frequency_cap", fresh.pk: ""}
    assert Delivery.objects.get(campaign=later, patient=fresh).status == "sent"


def test_the_cap_is_off_by_default_and_never_applies_to_treatment_messages(capped, settings):
    marketing = purpose_make()
    reminders = purpose_make(kind=Purpose.Kind.TREATMENT)
    patient = patient_make()
    authorization_make(patient=patient, purpose=marketing)
    authorization_make(patient=patient, purpose=reminders)
    _send(campaign_approved_make(purpose=marketing))

    reminder = campaign_approved_make(purpose=reminders)
    _send(reminder)
    assert Delivery.objects.get(campaign=reminder).status == "sent"

    settings.HIPAAMAIL_FREQUENCY_CAP = 0
    again = campaign_approved_make(purpose=marketing)
    _send(again)
    assert Delivery.objects.get(campaign=again).status == "sent"

