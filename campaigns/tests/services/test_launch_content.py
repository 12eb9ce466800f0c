"""Content is checked again at launch (R-SEND-SCOPE): what was approved may have changed under the campaign since —
a block retired, a form version that no longer lists a merge field. The launch then refuses with the reason and
creates nothing; the scheduler sends such a scheduled campaign back to draft instead of failing every minute."""
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import CampaignBlock, Delivery
from campaigns.periodic import campaign_launch_due_task
from campaigns.services.launch import campaign_launch
from campaigns.services.library import library_item_retire
from campaigns.services.lifecycle import campaign_schedule
from campaigns.tests.factories import block_make, campaign_approved_make
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def approved_with_block():
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    officer = staff_make(role="compliance officer")
    block = block_make(officer=officer)
    campaign = campaign_approved_make(purpose=purpose)
    CampaignBlock.objects.create(campaign=campaign, block=block, position=0)
    return campaign, block, officer


def test_r_send_scope_a_launch_refuses_content_that_no_longer_passes_and_creates_nothing(approved_with_block):
    campaign, block, officer = approved_with_block
    library_item_retire(actor=officer, kind="block", item_id=block.pk)

    with pytest.raises(ValidationError) as refused:
        campaign_launch(actor=officer, campaign_id=campaign.pk)

    assert [error.code for error in refused.value.error_list] == ["block_not_approved"]
    campaign.refresh_from_db()
    assert campaign.status == "approved" and campaign.launched_at is None
    assert not Delivery.objects.filter(campaign=campaign).exists()


def test_r_send_scope_a_merge_field_the_new_form_version_drops_stops_the_launch():
    purpose = purpose_make()
    form_published_make(purpose, merge_fields=["first_name", "email"])
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose, body_text="Dear {{ first_name }}, news.")
    form_published_make(purpose, merge_fields=["email"])  # a newer version no longer lists first_name

    with pytest.raises(ValidationError) as refused:
        campaign_launch(actor=staff_make(role="compliance officer"), campaign_id=campaign.pk)

    assert "first_name" in " ".join(refused.value.messages)
    assert not Delivery.objects.filter(campaign=campaign).exists()


def test_the_scheduler_sends_a_scheduled_campaign_whose_content_fails_back_to_draft(approved_with_block):
    campaign, block, officer = approved_with_block
    at = timezone.now() + timedelta(hours=1)
    campaign_schedule(actor=officer, campaign_id=campaign.pk, send_at=at, timezone_name="UTC")
    library_item_retire(actor=officer, kind="block", item_id=block.pk)

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"), mock.patch("django.utils.timezone.now", return_value=at):
        campaign_launch_due_task()

    campaign.refresh_from_db()
    assert campaign.status == "draft" and campaign.launched_at is None
    assert not Delivery.objects.filter(campaign=campaign).exists()
    refused = AuditEvent.objects.get(action="campaign.launch_refused")
    assert refused.details == {"from": "scheduled", "to": "draft", "codes": ["block_not_approved"]}


def test_the_scheduler_skips_a_campaign_the_button_launched_first_and_goes_on(approved_with_block):
    campaign, _, officer = approved_with_block
    other = campaign_approved_make(purpose=campaign.purpose)
    at = timezone.now() + timedelta(hours=1)
    for each in (campaign, other):
        campaign_schedule(actor=officer, campaign_id=each.pk, send_at=at, timezone_name="UTC")
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        with mock.patch("django.utils.timezone.now", return_value=at):
            due = [campaign.pk, other.pk]
            campaign_launch(actor=officer, campaign_id=campaign.pk)
            with mock.patch("campaigns.selectors.campaigns.campaign_due_list", return_value=due):
                campaign_launch_due_task()

    other.refresh_from_db()
    assert other.status == "sending"
