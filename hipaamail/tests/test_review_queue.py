"""The "needs your review" queue puts campaigns and journey versions together (issue 17, item 1): journeys stand
above campaigns, so hipaamail.context_processors.review_counts reads both (this test lives at the top of the house
for the same reason). Oldest submission first, each with who submitted it."""
import pytest

from campaigns.services.lifecycle import campaign_submit
from campaigns.tests.factories import campaign_make
from consent.tests.factories import purpose_make
from journeys.services.journeys import journey_submit
from journeys.tests.factories import journey_draft_make, journey_purpose_make

pytestmark = pytest.mark.django_db


def test_the_queue_has_campaigns_and_journey_versions_oldest_first_and_the_nav_counts_both(verified_client):
    campaign = campaign_make(purpose=purpose_make(), name="Spring masks")
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    journey = journey_draft_make(purpose=journey_purpose_make(), name="Welcome aboard")
    journey_submit(actor=journey.created_by, journey_id=journey.pk)
    verified_client.sign_in(role="compliance officer")

    page = verified_client.get("/campaigns/review/").content.decode()

    assert page.index("Spring masks") < page.index("Welcome aboard · v1")
    assert f'href="/journeys/{journey.pk}/review/"' in page
    assert f"submitted by {journey.created_by.email}" in page
    assert 'data-review-item="journey"' in page and 'data-review-item="campaign"' in page
    assert '<span class="visually-hidden">waiting: </span>2</span>' in page


def test_pages_without_a_staff_member_get_no_review_counts(client):
    response = client.get("/accounts/login/")

    assert "review_queue" not in response.context and "notice_unread_count" not in response.context
