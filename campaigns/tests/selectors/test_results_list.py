"""The campaign list: newest first, a status filter, and each launched campaign's progress."""
from unittest import mock

import pytest

from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make, campaign_make
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _launch(campaign, *, send: int | None = None):
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    if send is None:
        while delivery_dispatch_batch(campaign_id=campaign.pk):
            pass
        campaign_finish_if_done(campaign_id=campaign.pk)
    else:
        delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=send)


def test_campaign_list_is_newest_first_with_status_and_progress(verified_client, django_assert_max_num_queries):
    purpose = purpose_make()
    for _ in range(4):
        authorization_make(patient=patient_make(), purpose=purpose)
    draft = campaign_make(purpose=purpose, name="Oldest draft")
    sent = campaign_approved_make(purpose=purpose, name="Sent one")
    _launch(sent)
    sending = campaign_approved_make(purpose=purpose, name="Half sent")
    _launch(sending, send=1)  # 1 of 4 decided
    verified_client.sign_in(role="marketer")

    with django_assert_max_num_queries(12):
        page = verified_client.get("/").content.decode()

    names = [page.index(name) for name in ("Half sent", "Sent one", "Oldest draft")]
    assert names == sorted(names)
    assert 'aria-valuenow="25"' in page and ">25%<" in page
    assert 'aria-valuenow="100"' in page and ">100%<" in page
    assert f'data-campaign="{draft.pk}"' in page and page.count('role="progressbar"') == 2
    assert 'class="badge sending"' in page and 'class="badge sent"' in page and 'class="badge draft"' in page


def test_campaign_list_filters_by_status(verified_client):
    purpose = purpose_make()
    campaign_make(purpose=purpose, name="A draft")
    campaign_approved_make(purpose=purpose, name="An approved one")
    verified_client.sign_in(role="marketer")

    page = verified_client.get("/?status=approved").content.decode()
    everything = verified_client.get("/?status=nonsense").content.decode()

    assert "An approved one" in page and "A draft" not in page
    assert 'href="?status=approved" aria-current="page"' in page
    assert "An approved one" in everything and "A draft" in everything


def test_campaign_list_pages_through_many_campaigns(verified_client):
    purpose = purpose_make()
    for n in range(27):
        campaign_make(purpose=purpose, name=f"Campaign number {n:02d}")
    verified_client.sign_in(role="marketer")

    first = verified_client.get("/").content.decode()
    second = verified_client.get("/?page=2").content.decode()

    assert "Campaign number 26" in first and "Campaign number 01" not in first
    assert "Campaign number 01" in second and "Page 2 of 2" in second
