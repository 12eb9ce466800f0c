"""Every page a patient reads, in English and in Spanish, on a phone (390 px) and a desktop (1280 px): the portal, the
unsubscribe pages with their undo, the error pages (issue 17, items 5 and 6). Each passes axe-core, none scrolls
sideways, and each is written in its language. Screenshots `patient-<page>-<language>-<width>` go to $SCREENSHOT_DIR.
Marked `browser`."""
import re
from unittest import mock

import pytest
from django.core import mail
from django.core.cache import cache

from campaigns.models import Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.sending.messages import unsubscribe_token
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from conftest import assert_accessible, screenshot
from consent.models import Invitation
from consent.services import signing
from consent.tests.factories import (
    authorization_make,
    form_published_make,
    form_spanish_make,
    patient_make,
    purpose_make,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = (390, 1280)
WORDS = {  # a phrase each language's pages share, and its other language's, which must be absent
    "en": ("Your care", "Su atención"),
    "es": ("Su atención", "Your care"),
}


@pytest.fixture
def browser_context_args() -> dict:
    return {"viewport": {"width": 1280, "height": 900}}


def _shoot(page, axe_js, name: str, language: str) -> None:
    assert page.locator("html").get_attribute("lang") == language, name
    assert_accessible(page, axe_js)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (name, width)
        screenshot(page, f"patient-{name}-{language}-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})


def _code() -> str:
    return re.search(r"(?:Your code is|Su código es): (\d{6})", mail.outbox[-1].body).group(1)


@pytest.mark.parametrize("language", ["en", "es"])
def test_every_patient_page_in_both_languages(browser_context, live_server, axe_js, tmp_path, settings, language):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SITE_URL = live_server.url
    cache.clear()
    browser_context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
    base = live_server.url
    patient = patient_make(email=f"margaret.{language}@example.org", full_name="Margaret Ellen Jones", language=language)
    cpap = purpose_make(
        name="CPAP supplies", name_es="Suministros para CPAP",
        description="New masks, filters and tubing for your CPAP machine.",
        description_es="Mascarillas, filtros y tubos nuevos para su máquina CPAP.",
    )
    form_spanish_make(form_published_make(cpap))
    diabetes = purpose_make(
        name="Diabetes education program", name_es="Programa de educación sobre la diabetes",
        description="Classes about living well with diabetes.",
        description_es="Clases para vivir bien con diabetes.",
    )
    form_spanish_make(form_published_make(diabetes))
    hearing = purpose_make(name="Hearing aids", description="Offers on hearing aids we sell.")
    form_published_make(hearing)
    _, token = signing.invitation_create(
        actor=None, patient_id=patient.pk, purpose_id=cpap.pk, channel=Invitation.Channel.QR
    )
    page = browser_context.new_page()

    page.goto(f"{base}/my/sign-in/")
    _shoot(page, axe_js, "sign-in", language)
    page.locator("main button[type=submit]").last.click()
    page.wait_for_load_state()
    assert page.evaluate("document.activeElement.id") == "error-summary"
    _shoot(page, axe_js, "sign-in-error", language)

    page.goto(f"{base}/my/code/")
    _shoot(page, axe_js, "code-expired", language)
    page.goto(f"{base}/my/invite/not-a-token/")
    _shoot(page, axe_js, "invitation-invalid", language)

    # Someone else's address: a pending code no one knows, so five wrong codes lock it.
    page.goto(f"{base}/my/sign-in/")
    page.locator("input[name=email]").fill("nobody@example.org")
    page.locator("main form button[type=submit]").last.click()
    page.wait_for_url("**/my/code/")
    _shoot(page, axe_js, "code", language)
    page.locator("input[name=code]").fill("000000")
    page.locator("main form button[type=submit]").last.click()
    page.wait_for_load_state()
    _shoot(page, axe_js, "code-error", language)
    for _ in range(4):
        page.locator("input[name=code]").fill("000000")
        page.locator("main form button[type=submit]").last.click()
        page.wait_for_load_state()
    _shoot(page, axe_js, "code-locked", language)

    page.goto(f"{base}/my/invite/{token}/")
    _shoot(page, axe_js, "invitation-code", language)
    page.locator("input[name=code]").fill(_code())
    page.locator("main form button[type=submit]").last.click()
    page.wait_for_url(f"**/my/sign/{cpap.pk}/")
    _shoot(page, axe_js, "sign", language)
    page.locator("form[method=post] button[type=submit]").last.click()
    page.wait_for_load_state()
    assert page.evaluate("document.activeElement.id") == "error-summary"
    _shoot(page, axe_js, "sign-error", language)
    page.locator("input[name=signature_name]").fill("Margaret Ellen Jones")
    page.locator("input[name=intent]").check()
    page.locator("form[method=post] button[type=submit]").last.click()
    page.wait_for_url("**/my/signed/*/")
    _shoot(page, axe_js, "signed", language)

    authorization_make(patient=patient, purpose=hearing)  # a second one, to stop
    page.goto(f"{base}/my/")
    main = page.locator("main").inner_text()
    assert WORDS[language][0] in main and WORDS[language][1] not in main
    _shoot(page, axe_js, "home", language)
    page.goto(f"{base}/my/sign/{cpap.pk}/")
    _shoot(page, axe_js, "already-signed", language)
    page.goto(f"{base}/my/")
    page.locator("a[href$='/stop/']", has_text="Hearing aids").first.click()
    page.wait_for_url("**/stop/")
    _shoot(page, axe_js, "revoke-confirm", language)
    page.locator("main form button.danger").click()
    page.wait_for_url("**/my/")
    _shoot(page, axe_js, "home-after-stop", language)
    page.locator(".portal-nav button").click()
    page.wait_for_load_state()
    _shoot(page, axe_js, "signed-out", language)

    # A marketing message's one-click link, its undo, and a link that is not ours.
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign = campaign_approved_make(purpose=cpap)
        campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    delivery = Delivery.objects.get(campaign=campaign, patient=patient)
    page.goto(f"{base}/unsubscribe/{unsubscribe_token(delivery.pk)}/")
    _shoot(page, axe_js, "unsubscribe-confirm", language)
    page.locator("main form:not(.language-switch) button[type=submit]").click()
    page.wait_for_load_state()
    _shoot(page, axe_js, "unsubscribe-done", language)
    page.locator("section.undo button").click()
    page.wait_for_load_state()
    _shoot(page, axe_js, "unsubscribe-undone", language)
    page.goto(f"{base}/unsubscribe/forged-token/")
    _shoot(page, axe_js, "unsubscribe-invalid", language)
