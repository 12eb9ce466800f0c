"""A first campaign, from sign-in to sent, with both roles and one code per person (issue 17, "Done when").

Two people at two computers (two browser contexts, so two sessions): a marketer signs in with their code, walks the
wizard (purpose, audience with live counts, content from the purpose's block library, review) and submits; a
compliance officer signs in with their code, finds the campaign in "Needs review" (its count in the navigation),
and approves and sends it at once without typing a second code: the code of the sign-in a moment ago starts the
step-up grace (accounts.reentry, ADR 0024). The campaign sends to the covered patients only; the marketer, still
signed in, finds "approved" and "sent" in their notices. Each person typed exactly one code: R-SEC-MFA (every
staff account passes a second factor; the approval is audited as passed on the grace of that code). axe-core finds
no serious or critical violation on any page walked; the Content-Security-Policy holds on both contexts. Marked
`browser`. Screenshots: first-campaign-*."""
from unittest import mock

import pytest
from django.db.models import Count

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery, Notice
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.tests.factories import block_make
from conftest import assert_accessible, browser_sign_in, csp_violations_collect, csp_violations_watch, screenshot
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_in_chromium_a_first_campaign_goes_from_sign_in_to_sent_with_one_code_per_person(
    page, browser_context, live_server, axe_js
):
    cpap = purpose_make(name="CPAP supplies", description="New CPAP masks, cushions and filters you can buy from us.")
    form_published_make(cpap, merge_fields=["first_name"])
    for _ in range(13):
        authorization_make(patient=patient_make(), purpose=cpap)
    for _ in range(4):
        patient_make()  # in the audience, not covered: they get nothing
    officer = staff_make(role="compliance officer", with_totp=True)
    block_make(name="CPAP cushions: when to replace", officer=officer, purposes=[cpap],
               html="<h2>Fresh cushions, better sleep</h2><p>Most plans cover a new cushion every month.</p>")
    marketer = staff_make(role="marketer", with_totp=True)

    # The marketer: one code at sign-in, then the wizard to "submitted".
    browser_sign_in(page, live_server, marketer)
    page.click("text=New campaign")
    page.wait_for_url("**/campaigns/wizard/")
    page.click(f"label[data-purpose='{cpap.pk}']")
    page.fill("input[name=name]", "Spring CPAP refresh")
    page.click("text=Save draft and continue")
    page.wait_for_url("**/wizard/audience/")
    page.click("label[data-audience='every']")
    assert page.locator("label[data-audience='every'] [data-count=covered]").inner_text() == "13"
    assert_accessible(page, axe_js)
    page.click("main form[data-wizard-step=audience] button[type=submit]")
    page.wait_for_url("**/wizard/content/")
    page.fill("input[name=subject]", "Time to refresh your CPAP supplies")
    page.fill("textarea[name=body_text]", "Dear {{ first_name }},\n\nSpring is a good time for fresh supplies.")
    page.locator("[data-block-library] li", has_text="CPAP cushions").locator("button[data-block-add]").click()
    page.frame_locator("#preview iframe.email-preview").locator("text=Dear Alex,").wait_for()
    page.click("text=Save and review")
    page.wait_for_url("**/wizard/review/")
    assert page.locator("[data-reach] [data-count=covered]").inner_text() == "13"
    assert_accessible(page, axe_js)
    screenshot(page, "first-campaign-1-review")
    page.click("main button:has-text('Submit for approval')")
    page.wait_for_selector("text=Submitted for approval.")
    campaign = Campaign.objects.get(name="Spring CPAP refresh")
    assert campaign.status == "submitted"

    # The officer, at another computer: one code at sign-in; the queue; approve and send now with no other code.
    other = browser_context.browser.new_context(viewport={"width": 1280, "height": 860})
    violations = csp_violations_watch(other)
    officer_page = other.new_page()
    browser_sign_in(officer_page, live_server, officer)
    assert officer_page.inner_text("[data-nav=review-queue] [data-count]").endswith("1")
    officer_page.click("[data-nav=review-queue]")
    officer_page.wait_for_url("**/campaigns/review/")
    assert_accessible(officer_page, axe_js)
    officer_page.locator("[data-review-item=campaign] a").click()
    officer_page.wait_for_url(f"**/campaigns/{campaign.pk}/review/")
    assert officer_page.input_value("input[name=approvesend-code]") == ""
    assert_accessible(officer_page, axe_js)
    screenshot(officer_page, "first-campaign-2-approve-and-send")
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):  # this test sends in-process, not via a worker
        officer_page.click("#approve-send button[type=submit]")
        officer_page.wait_for_url(f"**/campaigns/{campaign.pk}/")
    assert "Approved, and sending started." in officer_page.inner_text("main")
    passed = AuditEvent.objects.get(action="mfa.reentry_passed")
    assert (passed.actor_id, passed.details["by"]) == (officer.pk, "grace")

    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    assert campaign_finish_if_done(campaign_id=campaign.pk) is True
    officer_page.wait_for_selector("h1 .badge:text-is('Sent')")
    assert_accessible(officer_page, axe_js)
    screenshot(officer_page, "first-campaign-3-sent")
    statuses = dict(Delivery.objects.filter(campaign=campaign).values_list("status").annotate(n=Count("id")).order_by())
    assert statuses == {"sent": 13, "blocked": 4}

    # The marketer, still signed in, is told: approved, then sent.
    page.reload()
    page.click("[data-nav=notices]")
    page.wait_for_url("**/campaigns/notices/")
    assert page.locator("[data-notice=approved]").is_visible() and page.locator("[data-notice=sent]").is_visible()
    assert_accessible(page, axe_js)
    screenshot(page, "first-campaign-4-notices")
    assert set(Notice.objects.filter(recipient=marketer).values_list("kind", flat=True)) == {"approved", "sent"}

    # One code each: the two sign-ins are the only second-factor checks either person passed.
    assert AuditEvent.objects.filter(action="mfa.reentry_passed").count() == 1
    csp_violations_collect(other, violations)
    other.close()
    assert violations == []
