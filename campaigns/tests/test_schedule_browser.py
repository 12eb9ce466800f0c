"""In Chromium, as a compliance officer would: schedule an approved campaign in their own time zone, pause and
resume it, send it now, pause it while it sends (the progress bar stops and says so), resume, and cancel it with
the second factor re-entered. Marked `browser` (slow). Screenshots go to $SCREENSHOT_DIR when it is set:
72-campaign-scheduled, 73-campaign-paused."""
import re
from unittest import mock

import pytest
from playwright.sync_api import expect

from accounts.tests.factories import staff_make
from campaigns.models import Campaign, Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.tests.factories import campaign_approved_make
from conftest import assert_accessible, browser_sign_in, screenshot, totp_code
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BROWSER_ZONE = "America/New_York"


@pytest.fixture
def browser_context_args() -> dict:
    # The officer's browser is in New York; the site's zone is America/Chicago.
    return {"viewport": {"width": 1280, "height": 860}, "timezone_id": BROWSER_ZONE}


def test_in_chromium_officer_schedules_pauses_resumes_and_cancels(page, live_server, axe_js):
    purpose = purpose_make(name="Flu vaccination clinics")
    for _ in range(10):
        authorization_make(patient=patient_make(), purpose=purpose)
    patient_make()
    campaign = campaign_approved_make(purpose=purpose, name="Autumn flu clinics")
    officer = staff_make(role="compliance officer", with_totp=True)
    browser_sign_in(page, live_server, officer)

    # Schedule: the time zone list starts on the organisation's zone (issue 17: every page shows its times in
    # it); the browser's own zone is offered, and the officer picks it.
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/review/")
    assert page.input_value("select[name=schedule-timezone]") == "America/Chicago"
    page.select_option("select[name=schedule-timezone]", BROWSER_ZONE)
    page.fill("input[name=schedule-send_at]", "2020-01-01T09:00")
    page.wait_for_selector("text=That time has already passed.")
    page.fill("input[name=schedule-code]", totp_code(officer))
    page.click("#schedule button[type=submit]")
    assert "That time has already passed" in page.locator("#schedule").inner_text()
    page.fill("input[name=schedule-send_at]", "2099-12-01T09:00")
    # The page's deferred scripts (the JavaScript catalogue first) may still be loading: wait for the sentence.
    expect(page.locator("#schedule-relative")).to_have_text(re.compile(r"^It will be sent in \d+ years\.$"))
    page.fill("input[name=schedule-code]", totp_code(officer))
    page.click("#schedule button[type=submit]")
    page.wait_for_url(f"**/campaigns/{campaign.pk}/")
    shown = "Dec 1, 2099, 8:00 AM CST"
    assert page.inner_text("[data-schedule]") == shown
    assert "Dec 1, 9:00 AM America/New_York, as entered" in page.inner_text("main")
    assert page.inner_text("h1 .badge") == "Scheduled"
    screenshot(page, "72-campaign-scheduled")
    assert_accessible(page, axe_js)

    # Pause and resume before its time.
    page.click("button:text-is('Pause')")
    page.wait_for_selector("text=Paused before its time")
    page.click("button:text-is('Resume')")
    page.wait_for_selector("text=Resumed: scheduled again for the time shown below.")
    assert page.inner_text("[data-schedule]") == shown
    assert Campaign.objects.get(pk=campaign.pk).status == "scheduled"

    # Send now; a worker (here: this test, in-process) sends the first batch while the page watches.
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/review/")
    page.fill("input[name=launch-code]", totp_code(officer))
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        page.click("text=Send now >> xpath=ancestor::form//button")
        page.wait_for_url(f"**/campaigns/{campaign.pk}/")
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=4)
    # 4 of the 10 covered sent; the uncovered patient is blocked and is not progress (issue 17).
    page.wait_for_function("document.getElementById('progress-percent').textContent === '40'")

    # Pause while sending: the bar stops where sending stopped, and the page says so.
    page.click("button:text-is('Pause')")
    page.wait_for_selector("[data-paused]")
    assert "Paused at 40% of the messages that can be sent" in page.inner_text("[data-paused]")
    assert page.get_attribute("[role=progressbar]", "aria-valuenow") == "40"
    assert page.inner_text("h1 .badge") == "Paused"
    assert delivery_dispatch_batch(campaign_id=campaign.pk) == 0  # no claim while paused
    screenshot(page, "73-campaign-paused")
    assert_accessible(page, axe_js)

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay") as wake:
        page.click("button:text-is('Resume')")
        page.wait_for_selector("text=Resumed: sending continues.")
    wake.assert_called_once_with(campaign.pk)

    # Cancel, with the code: a wrong one first.
    page.click("text=Cancel the campaign…")
    page.wait_for_url(re.compile(r".*/review/#cancel$"))
    page.fill("input[name=cancel-code]", "000000" if totp_code(officer) != "000000" else "111111")
    page.click("#cancel button[type=submit]")
    assert "That code did not work" in page.locator("#cancel").inner_text()
    assert Campaign.objects.get(pk=campaign.pk).status == "sending"
    page.fill("input[name=cancel-code]", totp_code(officer))
    page.click("#cancel button[type=submit]")
    page.wait_for_url(f"**/campaigns/{campaign.pk}/")
    assert page.inner_text("h1 .badge") == "Cancelled"
    assert "Blocked: campaign cancelled before sending" in page.inner_text("main")
    assert not page.locator("button:text-is('Resume')").count()

    outcomes = sorted(Delivery.objects.filter(campaign=campaign).values_list("status", "block_reason"))
    assert outcomes == [("blocked", "campaign_cancelled")] * 6 + [("blocked", "no_authorization")] + [("sent", "")] * 4
