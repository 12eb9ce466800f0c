"""The whole marketer's journey in Chromium, as new users would take it (issue 5, "Done when"): a marketer builds
a segment and watches its live counts, writes content from the approved library and previews it, submits; a
compliance officer reviews and approves; the campaign is sent by a real Celery worker over Redis into a real
SMTP server while the campaign page's progress bar climbs to 100%; only the covered patients of the segment
receive mail, each with one-click unsubscribe headers that work.

R-SEND-COVERED, R-SEND-EVIDENCE, R-RFC8058, R-SMALL-CELL, R-SEND-SCOPE. Marked `browser` and `worker`.
Screenshots: 90-journey-segment, 91-journey-editor, 92-journey-review, 93-journey-sent.
"""
import re
import tempfile
import urllib.request
from datetime import timedelta

import pytest

from accounts.tests.factories import staff_make
from campaigns.models import Campaign, Delivery
from campaigns.selectors.campaigns import delivery_sent_without_coverage_count
from campaigns.sending.messages import unsubscribe_token_read
from campaigns.tests.factories import block_make, template_make
from campaigns.tests.smtp_server import smtp_sink
from campaigns.tests.worker import SEND_TIMEOUT, purge_broker, worker_start, worker_stop
from conftest import assert_accessible, browser_sign_in, requires_postgresql, requires_redis, screenshot, totp_code
from consent.models import Authorization, Revocation
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    requires_postgresql,
    requires_redis,
    pytest.mark.django_db(transaction=True),
]

_UNSUBSCRIBE = re.compile(r"^<(https?://[^>]+/unsubscribe/([^/>]+)/)>$")


def _patients(purpose, other_purpose):
    """Illinois: 14 covered, and one each of no authorization, revoked, expired, another purpose only.
    Wisconsin: 12 covered, outside the segment."""
    covered = [patient_make(state="IL", full_name=f"Illinois Patient {n}") for n in range(14)]
    for patient in covered:
        authorization_make(patient=patient, purpose=purpose)
    uncovered = {}
    uncovered[patient_make(state="IL").pk] = "no_authorization"
    revoked = patient_make(state="IL")
    authorization_make(patient=revoked, purpose=purpose)
    authorization_revoke(actor=None, patient_id=revoked.pk, purpose_id=purpose.pk, channel="portal")
    uncovered[revoked.pk] = "revoked"
    expired = patient_make(state="IL")
    authorization_make(patient=expired, purpose=purpose, signed_ago=timedelta(days=400), expires_in=-timedelta(days=2))
    uncovered[expired.pk] = "expired"
    elsewhere = patient_make(state="IL")
    authorization_make(patient=elsewhere, purpose=other_purpose)
    uncovered[elsewhere.pk] = "wrong_purpose"
    outside = [patient_make(state="WI") for _ in range(12)]
    for patient in outside:
        authorization_make(patient=patient, purpose=purpose)
    return covered, uncovered, outside


def test_marketer_journey_from_segment_to_sent_mail_through_a_real_worker(page, live_server, axe_js):
    purpose = purpose_make(name="CPAP supplies")
    other_purpose = purpose_make(name="Diabetes education program")
    form_published_make(purpose, merge_fields=["first_name", "email"])
    covered, uncovered, outside = _patients(purpose, other_purpose)
    officer = staff_make(role="compliance officer", with_totp=True)
    template_make(name="Riverside Health standard", officer=officer)
    block = block_make(
        name="CPAP supplies: what to replace",
        html='<h2>Fresh supplies, better sleep</h2><p>Most plans cover a new cushion every month.</p>',
        officer=officer,
    )
    marketer = staff_make(role="marketer", with_totp=True)

    # 1. The marketer builds a segment and sees the live counts change before saving.
    browser_sign_in(page, live_server, marketer)
    page.goto(f"{live_server.url}/campaigns/segments/new/")
    page.fill("#id_name", "Illinois CPAP patients")
    page.select_option("#id_purpose", label="CPAP supplies")
    page.select_option("#id_main-0-field", "state")
    page.fill("#id_main-0-values", "IL")
    page.wait_for_function("document.querySelector('[data-count=covered]')?.textContent === '14'")
    # R-SMALL-CELL: each exclusion reason holds one patient, so it reads "fewer than 11", and the total (18)
    # is withheld, or 18 - 14 would give the small cells back.
    assert page.inner_text("[data-count=no_authorization]") == "fewer than 11"
    assert page.inner_text("[data-count=matched]") == "withheld (11 or more)"
    assert all(f"Illinois Patient {n}" not in page.content() for n in range(14))  # counts only, never names
    assert_accessible(page, axe_js)
    screenshot(page, "90-journey-segment")
    page.click("text=Save segment")
    page.wait_for_selector(".messages")

    # 2. They write the campaign from the approved library, preview it with the made-up patient, and submit.
    page.goto(f"{live_server.url}/campaigns/new/")
    page.fill("input[name=name]", "Spring CPAP refresh, Illinois")
    page.select_option("select[name=purpose]", str(purpose.pk))
    page.select_option("select[name=segment]", label="Illinois CPAP patients")
    page.fill("input[name=subject]", "Time to refresh your CPAP supplies")
    page.select_option("select[name=template]", label="Riverside Health standard")
    page.fill("textarea[name=body_text]", "Dear {{ first_name }},\n\nSpring is a good time for fresh supplies.")
    page.select_option("select[name=block_1]", str(block.pk))
    preview = page.frame_locator("#preview iframe.email-preview")
    preview.locator("text=Dear Alex,").wait_for()
    assert preview.locator("h2").inner_text() == "Fresh supplies, better sleep"
    assert "Illinois Patient" not in preview.locator("body").inner_text()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "91-journey-editor")
    page.click("#campaign-form button[type=submit]")
    page.wait_for_url("**/edit/")
    campaign = Campaign.objects.get(name="Spring CPAP refresh, Illinois")
    page.click("text=Submit for approval")
    page.wait_for_selector("text=Submitted for approval.")

    # 3. A compliance officer reviews exact coverage and the content, then approves with their second factor.
    page.context.clear_cookies()
    browser_sign_in(page, live_server, officer)
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/review/")
    assert "Dear Alex," in page.frame_locator("iframe").first.locator("body").inner_text()
    assert_accessible(page, axe_js)
    # Chromium paints an iframe below the fold blank in a full-page capture: show the whole page at once.
    page.set_viewport_size({"width": 1280, "height": page.evaluate("document.body.scrollHeight")})
    screenshot(page, "92-journey-review")
    page.set_viewport_size({"width": 1280, "height": 860})
    page.fill("input[name=approve-code]", totp_code(officer))
    page.click("button[name=decision][value=approve]")
    page.wait_for_selector("text=Approved. It can be sent now.")

    # 4. They send it now; a real worker sends it into a real SMTP server while the progress bar climbs.
    with smtp_sink(delay=0.05) as sink, tempfile.TemporaryFile(mode="w+") as log:
        purge_broker()
        worker = worker_start(sink, log, extra_env={"SITE_URL": live_server.url})
        try:
            page.fill("input[name=launch-code]", totp_code(officer))
            page.click("form[action$=\"/launch/\"] button[type=submit]")
            page.wait_for_url(f"**/campaigns/{campaign.pk}/")
            page.wait_for_function(
                "document.getElementById('progress-percent')?.textContent === '100'"
                " && document.querySelector('h1 .badge')?.textContent.trim() === 'Sent'",
                timeout=SEND_TIMEOUT * 1000,
            )
        finally:
            worker_stop(worker)
            log.seek(0)
            print(f"worker output (exit code {worker.returncode}):\n{log.read()}")
        records = sink.records
    assert page.get_attribute("#progress", "aria-valuenow") == "100"
    assert_accessible(page, axe_js)
    screenshot(page, "93-journey-sent")

    # 5. Only the covered patients of the segment received mail, once each, with working unsubscribe headers.
    assert sorted(address for record in records for address in record.recipients) == sorted(p.email for p in covered)
    deliveries = {d.patient_id: d for d in Delivery.objects.filter(campaign=campaign)}
    assert {pid: (d.status, d.block_reason) for pid, d in deliveries.items() if pid in uncovered} == {
        pid: ("blocked", reason) for pid, reason in uncovered.items()
    }
    assert not {p.pk for p in outside} & set(deliveries)
    assert delivery_sent_without_coverage_count(campaign_id=campaign.pk) == 0
    by_address = {record.recipients[0]: record for record in records}
    for patient in covered:
        record, delivery = by_address[patient.email], deliveries[patient.pk]
        assert record.message_id == delivery.message_id and delivery.status == "sent"
        assert record.list_unsubscribe_post == "List-Unsubscribe=One-Click"
        match = _UNSUBSCRIBE.match(record.list_unsubscribe)
        assert match and unsubscribe_token_read(match.group(2)) == delivery.pk
        assert b"Dear Illinois," in record.raw  # the merge field, filled per recipient (first word of the name)

    # The one-click POST a mailbox provider makes (no cookie, no login) revokes that patient's authorization.
    first = covered[0]
    url = _UNSUBSCRIBE.match(by_address[first.email].list_unsubscribe).group(1)
    assert url.startswith(live_server.url)
    request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert Revocation.objects.filter(authorization__patient=first, authorization__purpose=purpose).exists()
    assert Authorization.objects.filter(patient=first, purpose=purpose).count() == 1
