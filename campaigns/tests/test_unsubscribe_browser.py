"""In Chromium, as a patient would: a marketing message arrives; its one-click link opens a plain page that
asks once, stops the messages at once, and says so — and the link used again says it was already done.
Each page passes axe-core (no serious or critical violation). Marked `browser`.
R-RFC8058, R-CANSPAM-OPTOUT, R-REVOKE-ANYTIME."""
from unittest import mock

import pytest
from django.core import mail

from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from conftest import assert_accessible, screenshot
from consent.models import Revocation
from consent.selectors.coverage import authorization_covering_list
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_one_click_link_from_a_received_message_stops_the_messages(page, live_server, axe_js, settings):
    settings.SITE_URL = live_server.url
    purpose = purpose_make(name="CPAP supplies")
    patient = patient_make(email="margaret@example.org")
    authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    mail.outbox.clear()  # the review's notices to staff, mailed at each commit here (campaigns.notices)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):  # this test sends in-process, not via a worker
        campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    (message,) = mail.outbox
    link = message.extra_headers["List-Unsubscribe"].strip("<>")
    assert link in message.body  # the same link is in the footer a person reads

    page.goto(link)
    assert page.locator("h1").inner_text() == "Stop messages about “CPAP supplies”?"
    assert_accessible(page, axe_js)
    screenshot(page, "50-unsubscribe-confirm")
    page.get_by_role("button", name="Yes, stop these messages").click()
    page.wait_for_load_state()

    assert page.locator("h1").inner_text() == "Done. You will get no more of these messages."
    assert_accessible(page, axe_js)
    screenshot(page, "51-unsubscribe-done")
    assert not authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists()
    assert Revocation.objects.get().channel == "one_click"

    page.goto(link)
    assert page.locator("h1").inner_text() == "You already stopped these messages."
    page.goto(f"{live_server.url}/unsubscribe/forged-token/")
    assert page.locator("h1").inner_text() == "This link does not work"
    assert_accessible(page, axe_js)
    screenshot(page, "52-unsubscribe-bad-link")
