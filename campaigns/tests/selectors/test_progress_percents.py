"""The campaign list's progress bar counts what was sent, never the blocked (issue 17: 60 % with 0 sent)."""
from unittest import mock

import pytest

from campaigns.models import Campaign
from campaigns.selectors.results import campaign_progress_percents
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def test_the_list_progress_is_the_share_of_sendable_messages_sent_not_of_the_audience_decided():
    purpose = purpose_make()
    for _ in range(2):
        authorization_make(patient=patient_make(), purpose=purpose)
    for _ in range(3):
        patient_make()  # not covered: blocked at launch
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)

    def percent() -> int:
        return campaign_progress_percents(campaigns=[Campaign.objects.get(pk=campaign.pk)])[campaign.pk]

    assert percent() == 0  # three of five decided (blocked), none sent: not 60 %
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=1)
    assert percent() == 50
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=1)
    assert percent() == 100
