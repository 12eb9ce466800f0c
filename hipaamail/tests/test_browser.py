"""In a real browser, as a person would: sign in with a password and a TOTP code, see the campaigns; as a
compliance officer, see that a sent campaign went only to covered patients. Marked `browser` (slow).

Screenshots go to $SCREENSHOT_DIR when it is set (docs/screenshots/ holds the committed ones).
"""
from unittest import mock

import pytest

from accounts.tests.factories import staff_make
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make, campaign_make
from conftest import browser_sign_in, screenshot
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_marketer_signs_in_with_totp_and_sees_the_draft_campaign(page, live_server):
    marketer = staff_make(role="marketer", email="marketer@demo.hipaamail.test", with_totp=True)
    campaign_make(purpose=purpose_make(name="CPAP supplies"), author=marketer, name="Spring CPAP supplies refresh")

    browser_sign_in(page, live_server, marketer, screenshots=True)

    assert page.locator("h1").inner_text() == "Campaigns"
    assert page.get_by_role("link", name="Spring CPAP supplies refresh").is_visible()
    assert page.locator("text=Draft").first.is_visible()
    screenshot(page, "campaigns-marketer")


def test_compliance_officer_sees_sends_went_only_to_covered_patients(page, live_server):
    purpose = purpose_make(name="Diabetes education program")
    other = purpose_make(name="Refill reminders")
    for _ in range(14):
        authorization_make(patient=patient_make(), purpose=purpose)
    for _ in range(3):
        authorization_make(patient=patient_make(), purpose=other)
    patient_make()
    campaign = campaign_approved_make(purpose=purpose, name="Diabetes education program")
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):  # this test sends in-process, not via a worker
        campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    campaign_finish_if_done(campaign_id=campaign.pk)
    officer = staff_make(role="compliance officer", email="compliance@demo.hipaamail.test", with_totp=True)

    browser_sign_in(page, live_server, officer, screenshots=True)
    page.get_by_role("link", name="Diabetes education program").click()

    assert page.locator(".verdict.ok").is_visible()
    assert page.locator("[role=progressbar]").get_attribute("aria-valuenow") == "100"
    body = page.locator("main").inner_text()
    assert "Blocked: authorization for another purpose only" in body
    screenshot(page, "campaign-evidence-compliance")
