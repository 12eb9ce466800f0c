"""In Chromium, as a patient would: open the invitation, type the emailed code, read and sign, download the
PDF, stop it. Every page is checked with axe-core: no serious or critical violation. Marked `browser`.

axe-core comes from the npm registry, never from this repository (the `axe_js` fixture in conftest.py).
Screenshots go to $SCREENSHOT_DIR when it is set (docs/screenshots/ holds the committed ones).
"""
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core import mail

from conftest import assert_accessible, pdf_text, screenshot
from consent.models import Authorization, Invitation
from consent.selectors.coverage import authorization_covering_list
from consent.services import signing
from consent.tests.factories import form_published_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

@pytest.fixture
def browser_context_args() -> dict:
    """Overrides conftest's: the portal's window (its screenshots are committed) and downloads of the PDF."""
    return {"viewport": {"width": 1100, "height": 900}, "accept_downloads": True}


def _last_code() -> str:
    return re.search(r"Your code is: (\d{6})", mail.outbox[-1].body).group(1)


def test_patient_signs_downloads_and_revokes_in_the_browser(browser_context, live_server, axe_js, tmp_path, settings):
    """R-AUTH-ESIGN, R-AUTH-COPY, R-REVOKE-ANYTIME, R-NO-CONDITIONING, in Chromium, each page through axe-core."""
    settings.MEDIA_ROOT = tmp_path / "media"
    patient = patient_make(email="margaret.jones@example.org", full_name="Margaret Ellen Jones")
    purpose = purpose_make(name="CPAP supplies", description="New masks, filters and tubing for your CPAP machine.")
    form_published_make(purpose)
    other = purpose_make(name="Diabetes education program", description="Classes about living well with diabetes.")
    form_published_make(other)
    _, token = signing.invitation_create(
        actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel=Invitation.Channel.EMAIL
    )
    link = re.search(r"https?://\S+/my/invite/\S+/", mail.outbox[-1].body).group(0)
    page = browser_context.new_page()

    assert urlsplit(link).path == f"/my/invite/{token}/"
    page.goto(live_server.url + urlsplit(link).path)  # the link names the configured SITE_URL
    assert page.locator("h1").inner_text() == "Check your email"
    assert "m***@example.org" in page.locator("main").inner_text()
    assert_accessible(page, axe_js)
    screenshot(page, "40-invitation-code")

    page.get_by_label("The 6-digit code from the email").fill(_last_code())
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"**/my/sign/{purpose.pk}/")
    assert "Your care does not depend on it" in page.locator("main").inner_text()
    assert_accessible(page, axe_js)
    shown = page.locator(".form-text").inner_text()
    page.get_by_label("Type your full name to sign").fill("Margaret Ellen Jones")
    page.get_by_label("I am signing this form electronically.").check()
    screenshot(page, "41-sign-form")

    page.get_by_role("button", name="Sign the form").click()
    page.wait_for_url("**/my/signed/*/")
    assert page.locator("h1").inner_text() == "Thank you. You signed the form."
    assert_accessible(page, axe_js)
    screenshot(page, "42-signed-confirmation")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download your copy (PDF)").click()
    pdf_path = tmp_path / "copy.pdf"
    download_info.value.save_as(pdf_path)
    assert pdf_path.read_bytes()[:5] == b"%PDF-"
    authorization = Authorization.objects.get(patient=patient, purpose=purpose)
    assert pdf_path.read_bytes() == authorization.pdf.open("rb").read()
    # R-AUTH-COPY: the downloaded copy holds, word for word and in order, the text the page showed.
    words_shown = shown.split()
    words_pdf = re.sub(r"Page \d+ of \d+", "", pdf_text(pdf_path.read_bytes())).split()
    assert words_pdf[: len(words_shown)] == words_shown
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder and shutil.which("pdftoppm"):
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", str(pdf_path),
             str(Path(folder) / "46-signed-pdf-page1")],
            check=True,
        )

    page.get_by_role("link", name="Your choices and signed forms").click()
    page.wait_for_url("**/my/")
    main = page.locator("main").inner_text()
    assert "You receive these" in main and "You do not receive these" in main
    assert "Your care does not depend on any of these choices." in main
    assert_accessible(page, axe_js)
    screenshot(page, "43-portal")

    page.get_by_role("link", name="Stop these messages about CPAP supplies").click()
    assert page.locator("h1").inner_text() == "Stop messages about “CPAP supplies”?"
    assert_accessible(page, axe_js)
    screenshot(page, "44-revoke-confirm")
    page.get_by_role("button", name="Yes, stop these messages").click()
    page.wait_for_url("**/my/")
    assert "We will not send you messages about “CPAP supplies” any more." in page.locator("main").inner_text()
    assert not authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists()
    assert "Stopped by you" in page.locator("main").inner_text()

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert_accessible(page, axe_js)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    screenshot(page, "45-portal-mobile")


def test_sign_in_and_error_pages_pass_axe(browser_context, live_server, axe_js):
    page = browser_context.new_page()
    for url in ("/my/sign-in/", "/my/code/", "/my/invite/not-a-token/"):
        page.goto(live_server.url + url)
        assert_accessible(page, axe_js)
    page.goto(live_server.url + "/my/sign-in/")
    page.get_by_label("Your email address").fill("nobody@example.org")
    page.get_by_role("button", name="Email me a code").click()
    page.wait_for_url("**/my/code/")
    page.get_by_label("The 6-digit code from the email").fill("000000")
    page.get_by_role("button", name="Continue").click()
    assert "That code is not right" in page.locator("main").inner_text()
    assert_accessible(page, axe_js)
