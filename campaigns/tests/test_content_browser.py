"""In Chromium, as people would: a compliance officer writes and approves a content block in the library; a
marketer builds a campaign from the approved template and block, writes an introduction with a merge field, and
watches the live preview fill it with the made-up patient; then sends a test to their own address. Each page
passes axe-core (no serious or critical violation). Marked `browser`. Screenshots: 70-content-library,
71-campaign-editor-preview. R-SEND-SCOPE, R-MIN-NECESSARY."""
import pytest
from django.core import mail
from playwright.sync_api import expect

from accounts.tests.factories import staff_make
from campaigns.models import Campaign, ContentBlock
from campaigns.services.library import library_item_retire
from campaigns.tests.factories import block_make, template_make
from conftest import assert_accessible, browser_sign_in, screenshot
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_officer_approves_a_block_and_marketer_builds_content_with_a_live_preview(page, live_server, axe_js):
    purpose = purpose_make(name="CPAP supplies")
    form_published_make(purpose, merge_fields=["first_name", "email"])
    real = patient_make(full_name="Margaret Thornbury")
    authorization_make(patient=real, purpose=purpose)
    officer = staff_make(role="compliance officer", with_totp=True)
    template_make(
        name="Riverside Health standard",
        officer=officer,
        header_html='<p class="brand">Riverside Health</p>',
        footer_html="<p>Questions? Call 217-555-0100.</p>",
        css=".brand { font-size: 22px; font-weight: bold; color: #10243e } .header { border-bottom: 4px solid #0b6bcb }",
    )

    block_make(name="Flu season: vaccination hours", approved=False, officer=officer)
    retired = block_make(name="Winter offer 2025", officer=officer)
    library_item_retire(actor=officer, kind="block", item_id=retired.pk)

    # The compliance officer writes a block; the sanitiser removes what email may not carry; they approve it.
    browser_sign_in(page, live_server, officer)
    page.goto(f"{live_server.url}/campaigns/content/")
    page.click("text=New block")
    page.fill("input[name=name]", "CPAP supplies: what to replace")
    page.fill(
        "textarea[name=html]",
        "<h2>Fresh supplies, better sleep</h2><p>Most plans cover a new cushion every month.</p>"
        '<p><a href="https://riverside-health.example/cpap" onclick="track()">Order online</a></p>'
        "<script>alert(1)</script>",
    )
    page.click("main form button[type=submit]")
    page.wait_for_selector("text=The HTML was cleaned for email")
    block = ContentBlock.objects.get(name="CPAP supplies: what to replace")
    assert "script" not in block.html and "onclick" not in block.html
    page.click("button:has-text('Approve')")
    page.wait_for_selector("text=Approved: marketers can now choose it.")
    block.refresh_from_db()
    assert (block.status, block.approved_by_id) == ("approved", officer.pk)
    page.goto(f"{live_server.url}/campaigns/content/")
    assert page.locator("tr", has_text="CPAP supplies: what to replace").locator(".badge").inner_text() == "Approved"
    assert_accessible(page, axe_js)
    screenshot(page, "70-content-library")

    # The marketer cannot open the library, and builds the campaign's content from it with a live preview.
    page.context.clear_cookies()
    marketer = staff_make(role="marketer", with_totp=True)
    browser_sign_in(page, live_server, marketer)
    assert page.goto(f"{live_server.url}/campaigns/content/").status == 404
    page.goto(f"{live_server.url}/campaigns/new/")
    page.fill("input[name=name]", "Spring CPAP refresh")
    page.select_option("select[name=purpose]", str(purpose.pk))
    # The segment picker names who would get it for the purpose just chosen (a marketer: small counts withheld).
    expect(page.locator("select[name=segment] option[value='']")).to_have_text(
        "Every patient (no segment) · fewer than 11 would get it"
    )
    page.fill("input[name=subject]", "Time to refresh your CPAP supplies")
    page.select_option("select[name=template]", label="Riverside Health standard")
    page.fill("textarea[name=body_text]", "Dear {{ first_name }},\n\nSpring is a good time for fresh supplies.")
    page.select_option("select[name=block_1]", str(block.pk))
    preview = page.frame_locator("#preview iframe.email-preview")
    preview.locator("text=Dear Alex,").wait_for()
    assert preview.locator("h2").inner_text() == "Fresh supplies, better sleep"
    assert "Riverside Health" in preview.locator("body").inner_text()
    assert page.inner_text("[data-preview-subject]") == "Time to refresh your CPAP supplies"
    assert "Thornbury" not in page.content() and "Margaret" not in preview.locator("body").inner_text()
    assert page.locator("[data-block-slot]:visible").count() == 2  # the chosen block and one more choice

    # A field the purpose's form does not list shows as a problem at once (R-SEND-SCOPE).
    page.fill("textarea[name=body_text]", "Dear {{ first_name }} {{ last_name }},\n\nSpring is a good time.")
    page.wait_for_selector("[data-preview-problems] >> text=does not list it")
    page.fill("textarea[name=body_text]", "Dear {{ first_name }},\n\nSpring is a good time for fresh supplies.")
    page.wait_for_selector("[data-preview-problems]", state="detached")
    preview.locator("text=Dear Alex,").wait_for()
    assert_accessible(page, axe_js)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "71-campaign-editor-preview")

    page.click("#campaign-form button[type=submit]")
    page.wait_for_url("**/edit/")
    campaign = Campaign.objects.get()
    assert list(campaign.content_blocks.values_list("block_id", flat=True)) == [block.pk]
    page.click(f"text=Send a test to {marketer.email}")
    page.wait_for_selector(f"text=A test of the saved version was sent to {marketer.email}")
    (message,) = mail.outbox
    assert message.to == [marketer.email] and message.subject == "[TEST] Time to refresh your CPAP supplies"
    assert "Dear Alex," in message.body
    page.click("text=Submit for approval")
    page.wait_for_selector("text=Submitted for approval.")
    campaign.refresh_from_db()
    assert campaign.status == "submitted"
