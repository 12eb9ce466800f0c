"""In Chromium: a sent campaign's results as a marketer reads them (aggregates, small counts suppressed) and as a
compliance officer reads them (exact), with the server-drawn charts; and the campaign list with each campaign's
status and progress. Each page passes axe-core. Marked `browser`. R-SMALL-CELL, R-MIN-NECESSARY.

Screenshots: 74-campaign-results (marketer), 74-campaign-results-compliance (the results section), 75-campaign-list.
"""
import os
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.utils import timezone

from accounts.tests.factories import staff_make
from campaigns.models import Delivery
from campaigns.sending.bounces import BounceKind, delivery_bounce_record
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.sending.tracking import delivery_click_record, delivery_open_record
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_cancel, campaign_pause, campaign_schedule, campaign_submit
from campaigns.services.unsubscribe import delivery_unsubscribe
from campaigns.tests.factories import campaign_approved_make, campaign_make
from conftest import assert_accessible, browser_sign_in, screenshot
from consent.services.authorizations import authorization_revoke
from consent.services.form_versions import purpose_tracking_set
from consent.services.suppressions import suppression_record
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _send(campaign, *, batch: int | None = None):
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    if batch is not None:
        delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=batch)
        return campaign
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    campaign_finish_if_done(campaign_id=campaign.pk)
    return campaign


def _section_screenshot(page, locator, name: str, margin: int = 20) -> None:
    """One part of the page with a margin around it, to $SCREENSHOT_DIR/<name>.png when it is set."""
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        box = locator.bounding_box()
        clip = {"x": max(box["x"] - margin, 0), "y": max(box["y"] - margin, 0),
                "width": box["width"] + 2 * margin, "height": box["height"] + 2 * margin}
        page.screenshot(path=str(Path(folder) / f"{name}.png"), clip=clip, full_page=True)


@pytest.fixture
def sent_campaign():
    """A sent campaign of a purpose that tracks: 120 patients in the audience, every kind of outcome."""
    purpose = purpose_make(name="CPAP supplies")
    purpose_tracking_set(actor=None, purpose_id=purpose.pk, enabled=True)
    other = purpose_make(name="Refill reminders")
    for n in range(120):
        patient = patient_make()
        if n < 14:
            continue  # no authorization
        if n < 20:
            authorization_make(patient=patient, purpose=other)
            continue
        if n < 23:
            authorization_make(patient=patient, purpose=purpose, expires_in=timedelta(days=-2), signed_ago=timedelta(days=30))
            continue
        authorization_make(patient=patient, purpose=purpose)
        if n < 26:
            authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")
        elif n < 28:
            suppression_record(actor=None, email=patient.email, reason="complaint")
    campaign = _send(campaign_approved_make(purpose=purpose, name="Spring CPAP mask refresh"))
    sent = list(Delivery.objects.filter(campaign=campaign, status="sent").select_related("patient").order_by("id"))
    for index, delivery in enumerate(sent):
        if index < 3:
            kind = BounceKind.HARD if index < 2 else BounceKind.SOFT
            delivery_bounce_record(message_id=delivery.message_id, recipients=[delivery.patient.email], kind=kind,
                                   status="5.1.1" if kind == BounceKind.HARD else "4.2.2", source="dsn")
            continue
        if index < 61:
            delivery_open_record(delivery_id=delivery.pk)
        if index < 26:
            delivery_click_record(delivery_id=delivery.pk, campaign_id=campaign.pk)
        if 85 <= index < 89:
            delivery_unsubscribe(delivery_id=delivery.pk)
    return campaign


def test_campaign_results_as_a_marketer_and_as_a_compliance_officer(page, live_server, axe_js, sent_campaign):
    marketer = staff_make(role="marketer", email="marketer@demo.hipaamail.test", with_totp=True)
    browser_sign_in(page, live_server, marketer)
    page.goto(f"{live_server.url}/campaigns/{sent_campaign.pk}/")

    results = page.locator("section.results")
    assert page.locator('[data-stat="sent"]').inner_text() == "92"
    assert page.locator('[data-stat="audience"]').inner_text() == "120"
    assert page.locator('[data-stat="unsubscribed"]').inner_text() == "fewer than 11"
    assert page.locator('[data-stat="opened"]').inner_text() == "58"
    assert page.locator('[data-stat="clicked"]').inner_text() == "23"
    charts = results.locator("figure.chart svg[role=img]")
    assert charts.count() == 3
    assert "Opened: 58" in page.locator("#chart-funnel desc").text_content()
    assert page.locator("#chart-after .bar-range").count() == 3  # bounced hard, soft, unsubscribed: ranges
    assert "Evidence for each patient" not in page.locator("main").inner_text()
    assert_accessible(page, axe_js)
    screenshot(page, "74-campaign-results")

    page.get_by_role("button", name="Sign out").click()
    officer = staff_make(role="compliance officer", email="compliance@demo.hipaamail.test", with_totp=True)
    browser_sign_in(page, live_server, officer)
    page.goto(f"{live_server.url}/campaigns/{sent_campaign.pk}/")

    assert page.locator('[data-stat="unsubscribed"]').inner_text() == "4"
    assert page.locator("section.results .bar-range").count() == 0
    assert "Bounced (hard): 2" in page.locator("#chart-after desc").text_content()
    assert page.locator(".verdict.ok").is_visible()
    assert_accessible(page, axe_js)
    _section_screenshot(page, page.locator("section.results"), "74-campaign-results-compliance")


def test_campaign_list_shows_status_and_progress(page, live_server, axe_js):
    purpose = purpose_make(name="CPAP supplies")
    other = purpose_make(name="Diabetes education program")
    for _ in range(8):
        authorization_make(patient=patient_make(), purpose=purpose)
        authorization_make(patient=patient_make(), purpose=other)
    marketer = staff_make(role="marketer", email="marketer@demo.hipaamail.test", with_totp=True)
    officer = staff_make(role="compliance officer", with_totp=True)
    _send(campaign_approved_make(purpose=other, name="Diabetes education, spring", author=marketer))
    cancelled = campaign_approved_make(purpose=purpose, name="Holiday hours notice", author=marketer)
    campaign_cancel(actor=officer, campaign_id=cancelled.pk)
    paused = _send(campaign_approved_make(purpose=other, name="Glucose meter trade-in", author=marketer), batch=3)
    campaign_pause(actor=officer, campaign_id=paused.pk)
    _send(campaign_approved_make(purpose=purpose, name="Spring CPAP mask refresh", author=marketer), batch=5)
    scheduled = campaign_approved_make(purpose=purpose, name="Summer travel CPAP kit", author=marketer)
    campaign_schedule(
        actor=officer, campaign_id=scheduled.pk, send_at=timezone.now() + timedelta(days=9),
        timezone_name="America/Chicago",
    )
    campaign_approved_make(purpose=other, name="Foot care workshop", author=marketer)
    submitted = campaign_make(purpose=purpose, name="Cushion subscription offer", author=marketer)
    campaign_submit(actor=marketer, campaign_id=submitted.pk)
    campaign_make(purpose=purpose, name="Humidifier filters reminder", author=marketer)

    browser_sign_in(page, live_server, marketer)

    rows = page.locator("table.campaign-list tbody tr")
    assert rows.count() == 8
    assert rows.first.locator("a.name").inner_text() == "Humidifier filters reminder"  # newest first
    sending = page.locator("tr", has_text="Spring CPAP mask refresh")
    assert sending.locator("[role=progressbar]").get_attribute("aria-valuenow") == "62"  # 5 sent of the 8 that can go (8 blocked are no progress)
    assert sending.locator(".badge").inner_text() == "Sending"
    assert page.locator("tr", has_text="Diabetes education, spring").locator(".percent").inner_text() == "100%"
    assert page.locator("tr", has_text="Glucose meter trade-in").locator(".percent").inner_text() == "38%"  # 3 sent of the 8 that can go
    assert_accessible(page, axe_js)
    screenshot(page, "75-campaign-list")

    page.get_by_role("link", name="Sending 1").click()
    assert page.locator("table.campaign-list tbody tr").count() == 1
