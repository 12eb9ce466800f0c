"""In a real browser, as a person would: sign in with a password and a TOTP code, see the campaigns; as a
compliance officer, see that a sent campaign went only to covered patients. Marked `browser` (slow).

Screenshots go to $SCREENSHOT_DIR when it is set (docs/screenshots/ holds the committed ones).
"""
import os
from unittest import mock
from pathlib import Path

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from campaigns import services
from campaigns.tests.factories import campaign_approved_make, campaign_make
from consent.tests.factories import authorization_make, patient_make, purpose_make
from hipaamail.tests.factories import PASSWORD, staff_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test-browser installs it)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes between
    # browser steps are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        yield context.new_page()
        browser.close()


def _shot(page, name: str) -> None:
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _sign_in(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    _shot(page, f"sign-in-{user.groups.first().name.replace(' ', '-')}")
    page.click("main button[type=submit]")
    page.wait_for_url("**/account/two-factor/**")
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    page.fill("input[name=token]", f"{totp(device.bin_key, device.step, device.t0, device.digits):06d}")
    _shot(page, "two-factor-code")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def test_marketer_signs_in_with_totp_and_sees_the_draft_campaign(page, live_server):
    marketer = staff_make(role="marketer", email="marketer@demo.hipaamail.test", with_totp=True)
    campaign_make(purpose=purpose_make(name="CPAP supplies"), author=marketer, name="Spring CPAP supplies refresh")

    _sign_in(page, live_server, marketer)

    assert page.locator("h1").inner_text() == "Campaigns"
    assert page.get_by_role("link", name="Spring CPAP supplies refresh").is_visible()
    assert page.locator("text=Draft").first.is_visible()
    _shot(page, "campaigns-marketer")


def test_compliance_officer_sees_sends_went_only_to_covered_patients(page, live_server):
    purpose = purpose_make(name="Diabetes education program")
    other = purpose_make(name="Refill reminders")
    for _ in range(14):
        authorization_make(patient=patient_make(), purpose=purpose)
    for _ in range(3):
        authorization_make(patient=patient_make(), purpose=other)
    patient_make()
    campaign = campaign_approved_make(purpose=purpose, name="Diabetes education program")
    with mock.patch("campaigns.services._wake_dispatch"):  # this test sends in-process, not via a worker
        services.campaign_launch(actor=None, campaign_id=campaign.pk)
    while services.delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    services.campaign_finish_if_done(campaign_id=campaign.pk)
    officer = staff_make(role="compliance officer", email="compliance@demo.hipaamail.test", with_totp=True)

    _sign_in(page, live_server, officer)
    page.get_by_role("link", name="Diabetes education program").click()

    assert page.locator(".verdict.ok").is_visible()
    assert page.locator("[role=progressbar]").get_attribute("aria-valuenow") == "100"
    body = page.locator("main").inner_text()
    assert "Blocked: authorization for another purpose only" in body
    _shot(page, "campaign-evidence-compliance")
