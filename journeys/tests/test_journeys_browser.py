"""A journey in Chromium, as its users take it (issue 14, "Done when": a browser test builds, approves and watches a
journey). A marketer builds a journey on the event "equipment delivered" with equipment type CPAP — send, wait,
send — previewing each message live with the made-up patient, and submits it; a compliance officer signs in with
their second factor, reviews the trigger in words and each message, and approves with the step-up; then care
events arrive for patients (in process: consent.services.events.patient_event_record), the engine runs their steps
at test-accelerated times through the one sender, and the officer watches the results page count them.

R-SEND-COVERED, R-SEND-EVIDENCE, R-SEND-SCOPE, R-SEC-MFA, R-SMALL-CELL. Every page is checked with axe-core and
under the Content-Security-Policy (the `page` fixture). Screenshots (SCREENSHOT_DIR=docs/screenshots):
journey-list, journey-builder, journey-detail, journey-review, journey-results, journey-builder-390.
"""
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import staff_make
from campaigns.models import Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from conftest import assert_accessible, browser_sign_in, screenshot, totp_code
from consent.services.events import patient_event_record
from consent.tests.factories import authorization_make, patient_make
from journeys.engine.intake import events_route
from journeys.engine.steps import journey_steps_advance
from journeys.models import Enrolment, Journey
from journeys.tests.factories import journey_purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

COVERED = 14  # more than ten: exact for everyone
UNCOVERED = 1  # no authorization: blocked at the first message


def _whole_page(page):
    """Chromium paints an iframe below the fold blank in a full-page capture: show the whole page at once."""
    page.set_viewport_size({"width": page.viewport_size["width"],
                            "height": page.evaluate("document.body.scrollHeight")})


def _shoot(page, name: str, *, width: int = 1280):
    page.set_viewport_size({"width": width, "height": 860})
    _whole_page(page)
    screenshot(page, name)
    page.set_viewport_size({"width": 1280, "height": 860})


def _run_engine(rounds: int = 30):
    """Route the events, run the due steps, send what was queued: until nothing is running."""
    for _ in range(rounds):
        events_route()
        _, campaigns = journey_steps_advance()
        for campaign_id in campaigns:
            while delivery_dispatch_batch(campaign_id=campaign_id):
                pass
        if not Enrolment.objects.filter(status="active").exists():
            return
        due = Enrolment.objects.filter(status="active").order_by("due_at").values_list("due_at", flat=True).first()
        while due and timezone.now() <= due:
            pass


def test_marketer_builds_officer_approves_and_watches_a_journey(page, live_server, axe_js, settings):
    settings.HIPAAMAIL_JOURNEY_MINUTE_SECONDS = 0.00005  # three days last about a fifth of a second
    settings.HIPAAMAIL_QUIET_HOURS = ""
    purpose = journey_purpose_make(name="CPAP supplies")
    marketer = staff_make(role="marketer", with_totp=True)
    officer = staff_make(role="compliance officer", with_totp=True)

    # 1. The marketer builds the journey: the trigger, a message, a wait, another message.
    browser_sign_in(page, live_server, marketer)
    page.click("nav >> text=Journeys")
    page.wait_for_url("**/journeys/")
    page.click("text=New journey")
    page.wait_for_url("**/journeys/new/")
    page.fill("input[name=name]", "CPAP follow-up")
    page.select_option("select[name=purpose]", str(purpose.pk))
    page.check("input[name=trigger][value=event]")
    assert page.is_hidden("[data-trigger-panel=date]")  # the script shows the chosen trigger's fields only
    page.select_option("select[name=event_type]", "equipment.delivered")
    page.select_option("select[name=condition_1_attribute]", "equipment_type")
    page.fill("input[name=condition_1_value]", "CPAP")
    page.fill("input[name=steps-0-subject]", "How is your new CPAP?")
    page.fill("textarea[name=steps-0-body_text]", "Hello {{ first_name }},\n\nHow are the first nights going?")
    first_preview = page.frame_locator("[data-step][data-index='0'] iframe.email-preview")
    first_preview.locator("text=Hello Alex,").wait_for()  # the live preview, with the made-up patient
    page.click("[data-add-step=wait]")
    page.wait_for_selector("input[name=steps-1-wait_days]")
    page.fill("input[name=steps-1-wait_days]", "3")
    page.click("[data-add-step=send]")
    page.wait_for_selector("input[name=steps-2-subject]")
    page.fill("input[name=steps-2-subject]", "Tips for your CPAP")
    page.fill("textarea[name=steps-2-body_text]", "Three tips for a better night, {{ first_name }}.")
    page.frame_locator("[data-step][data-index='2'] iframe.email-preview").locator(
        "text=Three tips for a better night, Alex."
    ).wait_for()
    assert page.input_value("input[name=steps-TOTAL_FORMS]") == "3"
    assert_accessible(page, axe_js)
    page.evaluate("window.scrollTo(0, 0)")
    _shoot(page, "journey-builder")
    page.click(".page-head button[value=save]")
    page.wait_for_selector("text=Draft saved.")
    journey = Journey.objects.get(name="CPAP follow-up")
    assert page.url.endswith(f"/journeys/{journey.pk}/")
    flow = page.inner_text("[aria-label='Steps of the version being written']")
    assert "Send “How is your new CPAP?”" in flow and "Wait 3 days" in flow and "Send “Tips for your CPAP”" in flow
    assert "“Equipment delivered” with Equipment type CPAP" in flow
    page.click("[data-submit-form] button[type=submit]")
    page.wait_for_selector("text=Submitted for review.")
    assert_accessible(page, axe_js)

    # 2. A compliance officer reviews it and approves it with their second factor again.
    page.context.clear_cookies()
    browser_sign_in(page, live_server, officer)
    page.goto(f"{live_server.url}/journeys/")
    page.click(f"[data-review-list] a[href='/journeys/{journey.pk}/review/']")
    page.wait_for_url(f"**/journeys/{journey.pk}/review/")
    assert "When the care event “Equipment delivered” with Equipment type CPAP is recorded" in page.inner_text(
        "[data-trigger-words]"
    )
    assert "Hello Alex," in page.frame_locator("iframe[title^='Step 1']").locator("body").inner_text()
    assert_accessible(page, axe_js)
    _shoot(page, "journey-review")
    page.fill("input[name=approve-code]", totp_code(officer))
    page.click("button[name=decision][value=approve]")
    page.wait_for_selector("text=Approved: version 1 is live.")
    assert page.inner_text("[data-status]") == "Active"
    assert_accessible(page, axe_js)
    _shoot(page, "journey-detail")

    # 3. Care events arrive; the engine runs the steps at their (accelerated) times through the one sender.
    covered = [patient_make(full_name=f"Covered Patient {n}") for n in range(COVERED)]
    for patient in covered:
        authorization_make(patient=patient, purpose=purpose)
    uncovered = [patient_make() for _ in range(UNCOVERED)]
    wheelchair = patient_make()
    occurred = timezone.now() - timedelta(minutes=1)
    for n, patient in enumerate([*covered, *uncovered]):
        patient_event_record(source="ehr", source_event_id=f"delivery-{n}", patient_id=patient.pk,
                             type="equipment.delivered", occurred_at=occurred,
                             attributes={"equipment_type": "CPAP"})
    patient_event_record(source="ehr", source_event_id="delivery-wheelchair", patient_id=wheelchair.pk,
                         type="equipment.delivered", occurred_at=occurred,
                         attributes={"equipment_type": "WHEELCHAIR-MANUAL"})
    _run_engine()
    assert Delivery.objects.filter(campaign__journey_step__version__journey=journey, status="sent").count() == 2 * COVERED
    assert not Enrolment.objects.filter(patient=wheelchair).exists()

    # 4. The officer watches the results: exact counts per step.
    page.goto(f"{live_server.url}/journeys/")
    page.click(f"tr[data-journey='{journey.pk}'] >> text=Results")
    page.wait_for_url(f"**/journeys/{journey.pk}/results/")
    assert page.inner_text("[data-stat=entered]") == str(COVERED + UNCOVERED)
    first = "[data-step-results='1']"
    assert page.inner_text(f"{first} [data-count=entered]") == str(COVERED + UNCOVERED)
    assert page.inner_text(f"{first} [data-count=sent] .num").startswith(str(COVERED))
    assert page.inner_text(f"{first} [data-count=blocked_no_authorization] .num") == str(UNCOVERED)
    assert page.inner_text(f"{first} [data-count=exit_not_covered] .num") == str(UNCOVERED)
    assert page.inner_text("[data-step-results='3'] [data-count=sent] .num").startswith(str(COVERED))
    assert page.inner_text("[data-count=completed]") == str(COVERED)
    assert "Covered Patient" not in page.content()  # aggregates only
    assert page.locator("figure.chart svg").count() == 1
    assert_accessible(page, axe_js)
    _shoot(page, "journey-results")

    # 5. The list, and the builder on a phone.
    page.goto(f"{live_server.url}/journeys/")
    assert page.inner_text(f"tr[data-journey='{journey.pk}'] [data-running]") == "0"
    assert_accessible(page, axe_js)
    _shoot(page, "journey-list")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/journeys/{journey.pk}/edit/")
    page.frame_locator("[data-step][data-index='0'] iframe.email-preview").locator("text=Hello Alex,").wait_for()
    assert_accessible(page, axe_js)
    _shoot(page, "journey-builder-390", width=390)
