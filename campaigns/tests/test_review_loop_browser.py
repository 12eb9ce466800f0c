"""In Chromium, the two-person review loop (issue 17, items 2 and 3): a marketer submits a campaign; a compliance
officer finds it in "Needs review" (the count in the navigation), opens it, and approves and sends it with ONE code;
the campaign page shows sent, blocked and remaining apart while it sends; the schedule form of another campaign
starts in the organisation's zone and says how far away the chosen time is; the author finds the approval in the
notices. R-SEC-MFA (one code, audited), R-SMALL-CELL (the author's view of the progress). Marked `browser`.

Screenshots (SCREENSHOT_DIR), each at 1280 and 390 wide: review-queue, review-page, review-progress,
review-schedule, review-notices."""
import re
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery, Notice
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.tests.factories import campaign_approved_make, campaign_make
from conftest import assert_accessible, browser_sign_in, screenshot, totp_code
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_context_args() -> dict:
    # A browser in UTC, as the tester's was: the pages still speak the organisation's zone (America/Chicago).
    return {"viewport": {"width": 1280, "height": 900}, "timezone_id": "UTC"}


def _both_widths(page, name: str) -> None:
    screenshot(page, f"{name}-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, f"{name}-390")
    page.set_viewport_size({"width": 1280, "height": 900})


def _sign_out(page) -> None:
    page.click("header .who button:text-is('Sign out')")
    page.wait_for_load_state()


def test_in_chromium_submit_review_approve_and_send_with_one_code_and_the_author_is_told(
    page, live_server, axe_js, settings
):
    settings.TIME_ZONE = "America/Chicago"
    purpose = purpose_make(name="CPAP supplies")
    for _ in range(12):
        authorization_make(patient=patient_make(), purpose=purpose)
    for _ in range(3):
        patient_make()
    marketer = staff_make(role="marketer", with_totp=True)
    officer = staff_make(role="compliance officer", with_totp=True)
    campaign = campaign_make(purpose=purpose, author=marketer, name="Spring CPAP masks")
    later = campaign_approved_make(purpose=purpose, name="Summer cushions")

    # The marketer submits.
    browser_sign_in(page, live_server, marketer)
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/edit/")
    page.click("button:text-is('Submit for approval')")
    page.wait_for_load_state()
    assert Campaign.objects.get(pk=campaign.pk).status == "submitted"
    _sign_out(page)

    # The officer sees it waiting: the count in the navigation, the queue, oldest first.
    browser_sign_in(page, live_server, officer)
    assert page.inner_text("[data-nav=review-queue] [data-count]").endswith("1")
    assert "Spring CPAP masks" in page.inner_text("[data-review-panel]")
    page.click("[data-nav=review-queue]")
    page.wait_for_url("**/campaigns/review/")
    item = page.locator("[data-review-item=campaign]")
    assert item.count() == 1
    assert f"submitted by {marketer.email}" in item.inner_text() and "CST" in item.inner_text()
    _both_widths(page, "review-queue")
    assert_accessible(page, axe_js)

    # The review page; approve and send now, one code for both.
    item.locator("a").click()
    page.wait_for_url(f"**/campaigns/{campaign.pk}/review/")
    assert page.locator("#approve-send").is_visible()
    _both_widths(page, "review-page")
    assert_accessible(page, axe_js)
    page.fill("input[name=approvesend-code]", totp_code(officer))
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        page.click("#approve-send button[type=submit]")
        page.wait_for_url(f"**/campaigns/{campaign.pk}/")
    assert "Approved, and sending started." in page.inner_text("main")
    assert list(AuditEvent.objects.filter(action="mfa.reentry_passed").values_list("details", flat=True)) == [
        {"for": "campaign.approve", "then": "campaign.launch", "by": "code"}
    ]

    # Progress: 3 blocked, 12 remaining, none sent is 0 %; the legend names each with its number.
    assert page.get_attribute("#progress", "aria-valuenow") == "0"
    legend = page.inner_text("#progress-legend")
    assert "Blocked (not sent): 3" in legend and "Remaining (queued or being sent): 12" in legend
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=6)
    page.wait_for_function("document.getElementById('progress-percent').textContent === '50'")
    assert "Sent: 6" in page.inner_text("#progress-legend")
    _both_widths(page, "review-progress")
    assert_accessible(page, axe_js)
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=100)
    campaign_finish_if_done(campaign_id=campaign.pk)
    page.wait_for_selector("h1 .badge:text-is('Sent')")
    assert Delivery.objects.filter(campaign=campaign, status="sent").count() == 12

    # Another campaign's schedule form: the organisation's zone, a suggested time, "in N hours" live.
    page.goto(f"{live_server.url}/campaigns/{later.pk}/review/")
    assert page.input_value("select[name=schedule-timezone]") == "America/Chicago"
    assert page.inner_text("#schedule-relative").startswith("It will be sent in ")
    soon = (timezone.localtime() + timedelta(days=3)).replace(hour=9, minute=0)
    page.fill("input[name=schedule-send_at]", f"{soon:%Y-%m-%dT%H:%M}")
    assert re.fullmatch(r"It will be sent in [23] days\.", page.inner_text("#schedule-relative"))
    page.locator("#schedule").scroll_into_view_if_needed()
    _both_widths(page, "review-schedule")
    _sign_out(page)

    # The author is told: the notices count, the approval with who approved it, a link to the campaign. (Signing
    # in again within the same 30 s step takes the same code, which the device refused as used: reset it.)
    totp_code(marketer)
    browser_sign_in(page, live_server, marketer)
    unread = Notice.objects.filter(recipient=marketer, read_at__isnull=True).count()
    assert unread >= 1 and page.inner_text("[data-nav=notices] [data-count]").endswith(str(unread))
    page.click("[data-nav=notices]")
    page.wait_for_url("**/campaigns/notices/")
    approved = page.locator("[data-notice=approved]")
    assert f"{officer.email} approved “Spring CPAP masks”." in approved.inner_text()
    _both_widths(page, "review-notices")
    assert_accessible(page, axe_js)
    approved.locator("a.button").click()
    page.wait_for_url(f"**/campaigns/{campaign.pk}/")
    assert Notice.objects.get(recipient=marketer, kind="approved").read_at is not None
