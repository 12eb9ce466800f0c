"""In Chromium, as a marketer would (issue 17, item 1): sign in, start a new campaign in the wizard, pick its purpose
(each with how many patients it covers), see live counts in the audience picker, make a segment inline without
leaving the wizard and see it chosen with its count, add a block from the block library (only the purpose's blocks are
offered), watch the live preview, review who will get it and why the others will not, and submit. Then duplicate it
and walk the copy's steps on a phone, back and forward. Each page passes axe-core (no serious or critical violation)
and the Content-Security-Policy. Marked `browser`. Screenshots (1280 and 390 wide): wizard-*. R-SMALL-CELL,
R-MIN-NECESSARY."""
import pytest

from accounts.tests.factories import staff_make
from campaigns.models import Campaign, Segment
from campaigns.selectors.segments import WITHHELD
from campaigns.services.lifecycle import campaign_reject
from campaigns.services.segments import segment_save
from campaigns.tests.factories import block_make, template_make
from conftest import assert_accessible, browser_sign_in, screenshot
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def _choice(page, value: str):
    return page.locator(f"label[data-audience='{value}']")


def _shot(page, name: str) -> None:
    """A full-page screenshot with every frame painted: Chromium does not paint frames outside the viewport, so the
    viewport is made as tall as the page for the picture, then put back."""
    viewport = page.viewport_size
    height = page.evaluate("document.scrollingElement.scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": height})
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    screenshot(page, name)
    page.set_viewport_size(viewport)


def test_in_chromium_a_marketer_walks_the_wizard_from_sign_in_to_submitted(page, live_server, axe_js):
    cpap = purpose_make(name="CPAP supplies", description="New CPAP masks, cushions and filters you can buy from us.")
    form_published_make(cpap, merge_fields=["first_name"])
    diabetes = purpose_make(name="Diabetes education", description="Classes and meters for people with diabetes.")
    for _ in range(14):
        authorization_make(patient=patient_make(state="IL", full_name="Margaret Thornbury"), purpose=cpap)
    for _ in range(3):
        patient_make(state="IL", full_name="Margaret Thornbury")
    for _ in range(12):
        authorization_make(patient=patient_make(state="WI"), purpose=cpap)
    officer = staff_make(role="compliance officer")
    segment_save(actor=officer, name="Illinois", rules={"op": "and", "rules": [{"field": "state", "in": ["IL"]}]})
    template_make(name="Riverside Health standard", officer=officer)
    cushions = block_make(
        name="CPAP cushions: when to replace", officer=officer, purposes=[cpap],
        html="<h2>Fresh cushions, better sleep</h2><p>Most plans cover a new cushion every month.</p>",
    )
    glucose = block_make(
        name="Glucose meter offer", officer=officer, purposes=[diabetes], html="<p>A new meter for you.</p>"
    )
    block_make(name="Our opening hours", officer=officer, html="<p>We are open 8 to 6, Monday to Friday.</p>")
    marketer = staff_make(role="marketer", with_totp=True)

    browser_sign_in(page, live_server, marketer)
    page.click("text=New campaign")
    page.wait_for_url("**/campaigns/wizard/")

    # 1. Purpose: each with how many patients its authorizations cover now.
    assert page.locator(f"label[data-purpose='{cpap.pk}'] [data-count=covered]").inner_text() == "26"
    page.click("main button[type=submit]")  # nothing chosen yet: plain messages, nothing saved
    page.wait_for_selector("text=Choose what the campaign is for.")
    assert not Campaign.objects.exists()
    page.click(f"label[data-purpose='{cpap.pk}']")
    page.fill("input[name=name]", "Spring CPAP refresh")
    assert_accessible(page, axe_js)
    screenshot(page, "wizard-1-purpose")
    page.click("text=Save draft and continue")
    page.wait_for_url("**/wizard/audience/")
    campaign = Campaign.objects.get()
    assert (campaign.status, campaign.name, campaign.purpose_id) == ("draft", "Spring CPAP refresh", cpap.pk)

    # 2. Audience: live counts in the picker itself, "Every patient" too (small counts suppressed for marketers).
    every = _choice(page, "every")
    assert every.locator("[data-count=covered]").inner_text() == "26"
    assert every.locator("[data-count=matched]").inner_text() == WITHHELD  # 29 = 26 + 3: the 3 stays hidden
    illinois = Segment.objects.get(name="Illinois")
    assert _choice(page, str(illinois.pk)).locator("[data-count=covered]").inner_text() == "14"
    assert "Thornbury" not in page.content()
    assert_accessible(page, axe_js)
    screenshot(page, "wizard-2-audience")

    # A new segment, made here: the counts follow the rules as they are typed; saved, it is chosen with its count.
    page.click("text=Or make a new segment here")
    page.fill("#segment-form input[name=name]", "Wisconsin and Illinois")
    page.select_option("#id_main-0-field", "state")
    page.fill("#id_main-0-values", "WI, IL")
    page.wait_for_function("document.querySelector('#counts [data-count=covered]')?.textContent === '26'")
    assert page.inner_text("#counts [data-count=matched]") == WITHHELD  # 29 = 26 + 3: the 3 stays hidden
    assert page.inner_text("#counts [data-count=no_authorization]") == "fewer than 11"
    assert_accessible(page, axe_js)
    screenshot(page, "wizard-2-audience-new-segment")
    page.click("text=Save the segment and choose it")
    page.wait_for_selector("text=saved and chosen for this campaign")
    wisconsin = Segment.objects.get(name="Wisconsin and Illinois")
    assert Campaign.objects.get().segment_id == wisconsin.pk
    chosen = _choice(page, str(wisconsin.pk))
    assert chosen.locator("input").is_checked()
    assert chosen.locator("[data-count=covered]").inner_text() == "26"
    page.click("main form[data-wizard-step=audience] button[type=submit]")
    page.wait_for_url("**/wizard/content/")

    # 3. Content: the block library offers only the purpose's blocks, with thumbnails; the live preview follows.
    library = page.locator("[data-block-library]")
    assert library.locator("text=CPAP cushions: when to replace").is_visible()
    assert library.locator("text=Our opening hours").is_visible()
    assert "Glucose meter offer" not in page.content()
    assert library.locator("iframe").count() == 2
    page.fill("input[name=subject]", "Time to refresh your CPAP supplies")
    page.fill("textarea[name=body_text]", "Dear {{ first_name }},\n\nSpring is a good time for fresh supplies.")
    library.locator("li", has_text="CPAP cushions").locator("button[data-block-add]").click()
    assert page.locator("select[name=block_1] option:checked").inner_text() == "CPAP cushions: when to replace"
    preview = page.frame_locator("#preview iframe.email-preview")
    preview.locator("text=Dear Alex,").wait_for()
    assert preview.locator("h2").inner_text() == "Fresh cushions, better sleep"
    assert_accessible(page, axe_js)
    _shot(page, "wizard-3-content")
    page.click("text=Save and review")
    page.wait_for_url("**/wizard/review/")

    # 4. Review: who will get it, and why the others will not; then submit.
    reach = page.locator("[data-reach]")
    assert reach.locator("[data-count=covered]").inner_text() == "26"
    assert reach.locator("[data-count=matched]").inner_text() == WITHHELD
    assert reach.locator("[data-count=no_authorization]").inner_text() == "fewer than 11"
    assert "Thornbury" not in page.content()
    assert_accessible(page, axe_js)
    _shot(page, "wizard-4-review")
    page.click("main button:has-text('Submit for approval')")
    page.wait_for_selector("text=Submitted for approval. A compliance officer other than you will review it.")
    campaign.refresh_from_db()
    assert campaign.status == "submitted"
    actions = page.locator("[data-draft-actions]")
    assert actions.locator("[data-action=edit]").count() == 0
    assert actions.locator("[data-action=withdraw]").is_visible()
    assert_accessible(page, axe_js)
    screenshot(page, "wizard-5-submitted")

    # On a phone: duplicate it and walk the copy's steps forward, then back.
    page.set_viewport_size(PHONE)
    actions.locator("[data-action=duplicate]").click()
    page.wait_for_url("**/wizard/purpose/")
    copy = Campaign.objects.exclude(pk=campaign.pk).get()
    assert (copy.name, copy.segment_id, copy.status) == ("Spring CPAP refresh (copy)", wisconsin.pk, "draft")
    assert page.input_value("input[name=name]") == "Spring CPAP refresh (copy)"
    screenshot(page, "wizard-1-purpose-390")
    page.click("text=Save and continue")
    page.wait_for_url("**/wizard/audience/")
    assert _choice(page, str(wisconsin.pk)).locator("input").is_checked()  # kept from the source
    screenshot(page, "wizard-2-audience-390")
    page.click("text=Or make a new segment here")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]  # the rules scroll in their box
    screenshot(page, "wizard-2-audience-new-segment-390")
    page.click("main form[data-wizard-step=audience] button[type=submit]")
    page.wait_for_url("**/wizard/content/")
    assert page.input_value("input[name=subject]") == "Time to refresh your CPAP supplies"
    page.frame_locator("#preview iframe.email-preview").locator("text=Dear Alex,").wait_for()
    _shot(page, "wizard-3-content-390")
    page.click("text=Save and review")
    page.wait_for_url("**/wizard/review/")
    _shot(page, "wizard-4-review-390")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    assert_accessible(page, axe_js)
    page.go_back()
    page.wait_for_url("**/wizard/content/")
    assert page.input_value("input[name=subject]") == "Time to refresh your CPAP supplies"
    page.click("nav.wizard-steps >> text=Purpose")
    page.wait_for_url("**/wizard/purpose/")
    assert page.input_value("input[name=name]") == "Spring CPAP refresh (copy)"
    for step in ("audience", "content"):  # the two widest steps fit a phone too
        page.goto(f"{live_server.url}/campaigns/{copy.pk}/wizard/{step}/")
        assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"], step
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    screenshot(page, "wizard-5-submitted-390")

    # Rejected: the reviewer's comment heads every step and the one-page editor.
    page.set_viewport_size({"width": 1280, "height": 860})
    campaign_reject(actor=officer, campaign_id=campaign.pk, comment="Name the plans that cover a monthly cushion.")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/wizard/review/")
    comment = page.locator("[data-rejection-comment]")
    assert "Name the plans that cover a monthly cushion." in comment.inner_text()
    assert officer.email in comment.inner_text()
    assert_accessible(page, axe_js)
    _shot(page, "wizard-6-rejected-comment")

    # The segment list counts for the purpose in its address, as each segment's own page does.
    page.goto(f"{live_server.url}/campaigns/segments/?purpose={cpap.pk}")
    row = page.locator(f"tr[data-segment='{wisconsin.pk}']")
    assert row.locator("[data-count=matched]").inner_text() == WITHHELD
    assert row.locator("[data-count=covered]").inner_text() == "26"
    assert_accessible(page, axe_js)
    screenshot(page, "wizard-7-segment-list")

    # The one-page editor offers, in each block choice, only the blocks of the purpose chosen on the page.
    page.goto(f"{live_server.url}/campaigns/new/")
    page.select_option("select[name=purpose]", str(diabetes.pk))
    assert page.locator(f"select[name=block_1] option[value='{cushions.pk}']").is_disabled()
    assert page.locator(f"select[name=block_1] option[value='{glucose.pk}']").is_enabled()
    page.select_option("select[name=purpose]", str(cpap.pk))
    assert page.locator(f"select[name=block_1] option[value='{cushions.pk}']").is_enabled()
    assert page.locator(f"select[name=block_1] option[value='{glucose.pk}']").is_disabled()
