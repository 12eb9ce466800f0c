"""In Chromium, with the django_language=es cookie, the scripts speak Spanish (issue 17, item 6; ADR 0030).

Each script takes its words from the JavaScript catalogue (static/jsi18n/es.js, from the djangojs.po catalogues) that
base.html loads before it: the audit log's "Verify the chain now" while the walk runs (audit-verify.js), the
schedule form's live "It will be sent in …" and the browser's own zone (timezone-preselect.js), and the segment
builder's hints (segment-builder.js). Only the scripts' own words are checked here: the pages' text is the
templates' and has its own check (hipaamail/tests/test_translations.py). Marked `browser`.
"""
import re

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from accounts.tests.factories import staff_make
from campaigns.tests.factories import campaign_approved_make
from consent.tests.factories import purpose_make
from hipaamail.tests import url_walk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BROWSER_ZONE = "America/Detroit"  # not in the form's list of zones: the script adds it


@pytest.fixture
def browser_context_args() -> dict:
    return {"viewport": {"width": 1280, "height": 860}, "timezone_id": BROWSER_ZONE}


@pytest.fixture
def spanish_officer(browser_context, live_server):
    """A compliance officer past the second factor, whose browser asks for Spanish."""
    officer = staff_make(role="compliance officer", with_totp=True)
    client = url_walk.staff_client(officer)
    browser_context.add_cookies([
        {"name": django_settings.SESSION_COOKIE_NAME, "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
         "url": live_server.url},
        {"name": django_settings.LANGUAGE_COOKIE_NAME, "value": "es", "url": live_server.url},
    ])
    return officer


def test_in_spanish_the_audit_log_says_the_chain_is_being_verified(page, live_server, spanish_officer):
    # The verification answers 204 No Content here, so the page stays as the script left it while the walk runs
    # (a long trail takes a minute); the walk itself and its result are the audit log's own tests.
    page.route("**/audit/verify/", lambda route: route.fulfill(status=204))
    page.goto(f"{live_server.url}/audit/")

    page.locator("form[data-verify-now] button").click()

    expect(page.locator("form[data-verify-now] button")).to_have_text("Verificando…")
    expect(page.locator("form[data-verify-now] button")).to_be_disabled()
    expect(page.locator("[data-verify-progress]")).to_have_text(
        "Leyendo cada entrada y recalculando su hash. Mantenga esta página abierta: el resultado aparecerá aquí."
    )


def test_in_spanish_the_schedule_form_says_when_the_campaign_will_be_sent(page, live_server, spanish_officer):
    campaign = campaign_approved_make(purpose=purpose_make(name="Flu vaccination clinics"))
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/review/")

    zone = page.locator(f"select[name=schedule-timezone] option[value='{BROWSER_ZONE}']")
    assert zone.inner_text() == "America/Detroit (este navegador)"
    page.fill("input[name=schedule-send_at]", "2020-01-01T09:00")
    expect(page.locator("#schedule-relative")).to_have_text("Esa hora ya pasó.")
    page.fill("input[name=schedule-send_at]", "2099-12-01T09:00")
    expect(page.locator("#schedule-relative")).to_have_text(re.compile(r"Se enviará dentro de \d+ años\."))


def test_in_spanish_the_segment_builder_hints_each_rule(page, live_server, spanish_officer):
    page.goto(f"{live_server.url}/campaigns/segments/new/")
    row = page.locator("tbody[data-rows] tr").first

    row.locator("select").select_option("age")
    assert row.locator("[data-part=low]").get_attribute("placeholder") == "edad mínima"
    assert row.locator("[data-part=high]").get_attribute("placeholder") == "edad máxima"
    row.locator("select").select_option("postal_prefix")
    assert row.locator("[data-part=values]").get_attribute("placeholder") == "p. ej., 627"
