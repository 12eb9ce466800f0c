"""The campaign wizard (issue 17, item 1): purpose -> audience -> content -> review -> submit. Live counts in the
audience picker (small counts suppressed for marketers, R-SMALL-CELL), a segment made inline, blocks offered and
accepted only for the campaign's purpose, the review's counts by reason, the reviewer's comment at the top, and the
draft actions (duplicate, delete, withdraw) on the pages."""
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.content import CampaignContent, content_problems
from campaigns.models import Campaign, CampaignBlock, Segment
from campaigns.selectors.segments import WITHHELD
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_approve, campaign_reject, campaign_submit
from campaigns.services.segments import segment_save
from campaigns.tests.factories import block_make, campaign_make
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

PHI = ("Margaret", "Thornbury", "margaret.thornbury@example.org")


@pytest.fixture
def cpap():
    """CPAP supplies: in Illinois 14 covered and 3 without an authorization; in Wisconsin 5 covered (22 patients)."""
    purpose = purpose_make(name="CPAP supplies")
    form_published_make(purpose, merge_fields=["first_name"])
    for _ in range(14):
        authorization_make(patient=patient_make(state="IL", full_name="Margaret Thornbury"), purpose=purpose)
    for _ in range(3):
        patient_make(state="IL", full_name="Margaret Thornbury")
    for _ in range(5):
        authorization_make(patient=patient_make(state="WI"), purpose=purpose)
    return purpose


@pytest.fixture
def illinois():
    return segment_save(actor=staff_make(), name="Illinois", rules={"op": "and", "rules": [{"field": "state", "in": ["IL"]}]})


def _actions(campaign_id: int) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="campaign", object_id=str(campaign_id))
        .order_by("id")
        .values_list("action", flat=True)
    )


def _choice(page: str, value: str) -> str:
    start = page.index(f'data-audience="{value}"')
    return page[start : page.index("</label>", start)]


def test_wizard_urls_are_named_in_the_campaigns_namespace():
    assert reverse("campaigns:wizard_start") == "/campaigns/wizard/"
    assert reverse("campaigns:wizard_purpose", args=[3]) == "/campaigns/3/wizard/purpose/"
    assert reverse("campaigns:wizard_audience", args=[3]) == "/campaigns/3/wizard/audience/"
    assert reverse("campaigns:wizard_content", args=[3]) == "/campaigns/3/wizard/content/"
    assert reverse("campaigns:wizard_review", args=[3]) == "/campaigns/3/wizard/review/"
    assert reverse("campaigns:campaign_duplicate", args=[3]) == "/campaigns/3/duplicate/"
    assert reverse("campaigns:campaign_delete", args=[3]) == "/campaigns/3/delete/"
    assert reverse("campaigns:campaign_withdraw", args=[3]) == "/campaigns/3/withdraw/"


# --- Step 1 ---------------------------------------------------------------------------------------------------


def test_first_step_shows_each_purpose_with_its_covered_count_and_saves_a_draft(verified_client, cpap):
    marketer = verified_client.sign_in(role="marketer")
    other = purpose_make(name="Diabetes education")

    page = verified_client.get("/campaigns/wizard/").content.decode()
    response = verified_client.post("/campaigns/wizard/", {"purpose": cpap.pk, "name": "Spring CPAP refresh"})

    assert f'data-purpose="{cpap.pk}"' in page and f'data-purpose="{other.pk}"' in page
    assert 'data-count="covered">19<' in page  # 14 + 5 covered for CPAP supplies
    campaign = Campaign.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/campaigns/{campaign.pk}/wizard/audience/"
    assert (campaign.status, campaign.name, campaign.purpose, campaign.created_by) == (
        "draft", "Spring CPAP refresh", cpap, marketer
    )


def test_first_step_without_a_purpose_or_a_name_says_so_and_saves_nothing(verified_client, cpap):
    verified_client.sign_in(role="marketer")

    response = verified_client.post("/campaigns/wizard/", {"purpose": "", "name": ""})

    page = response.content.decode()
    assert response.status_code == 200
    assert "Choose what the campaign is for." in page and "Give the campaign a name" in page
    assert not Campaign.objects.exists()


def test_going_back_to_the_first_step_keeps_what_was_entered_and_changes_it(verified_client, cpap):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"), name="First name")

    page = verified_client.get(f"/campaigns/{campaign.pk}/wizard/purpose/").content.decode()
    response = verified_client.post(f"/campaigns/{campaign.pk}/wizard/purpose/", {"purpose": cpap.pk, "name": "Second"})

    assert 'value="First name"' in page and f'value="{cpap.pk}" checked' in page
    assert response["Location"] == f"/campaigns/{campaign.pk}/wizard/audience/"
    assert Campaign.objects.get(pk=campaign.pk).name == "Second"


# --- Step 2 ---------------------------------------------------------------------------------------------------


def test_r_small_cell_the_audience_picker_shows_live_counts_for_every_patient_and_each_segment(
    verified_client, cpap, illinois
):
    """R-SMALL-CELL, R-MIN-NECESSARY: every patient: 22 = 19 covered + 3 without authorization, so the total is
    withheld; Illinois: 17 = 14 + 3, withheld too. The covered counts are shown; no patient is named."""
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))

    page = verified_client.get(f"/campaigns/{campaign.pk}/wizard/audience/").content.decode()

    every = _choice(page, "every")
    assert "Every patient" in every and 'data-count="covered">19<' in every
    assert f'data-count="matched">{WITHHELD}<' in every and 'value="every" checked' in every
    segment = _choice(page, str(illinois.pk))
    assert "Illinois" in segment and 'data-count="covered">14<' in segment
    assert f'data-count="matched">{WITHHELD}<' in segment
    assert ">22<" not in page and ">17<" not in page
    assert not any(text in page for text in PHI)


def test_a_compliance_officer_sees_exact_counts_in_the_picker(verified_client, cpap, illinois):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="compliance officer"))

    page = verified_client.get(f"/campaigns/{campaign.pk}/wizard/audience/").content.decode()

    assert 'data-count="matched">22<' in _choice(page, "every")
    assert 'data-count="matched">17<' in _choice(page, str(illinois.pk))


def test_choosing_a_segment_saves_it_and_goes_on_to_the_content(verified_client, cpap, illinois):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))

    response = verified_client.post(f"/campaigns/{campaign.pk}/wizard/audience/", {"segment": illinois.pk})

    assert response["Location"] == f"/campaigns/{campaign.pk}/wizard/content/"
    assert Campaign.objects.get(pk=campaign.pk).segment == illinois
    page = verified_client.get(f"/campaigns/{campaign.pk}/wizard/audience/").content.decode()
    assert f'value="{illinois.pk}" checked' in page


@pytest.mark.parametrize("value", ["", "999999", "not-a-number"])
def test_an_audience_that_does_not_exist_is_refused_plainly(verified_client, cpap, illinois, value):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))

    response = verified_client.post(f"/campaigns/{campaign.pk}/wizard/audience/", {"segment": value})

    assert response.status_code == 200
    assert b"Choose who the campaign is for" in response.content or b"That segment does not exist" in response.content
    assert Campaign.objects.get(pk=campaign.pk).segment is None


def test_a_segment_made_inline_is_saved_chosen_and_audited(verified_client, cpap):
    marketer = verified_client.sign_in(role="marketer")
    campaign = campaign_make(purpose=cpap, author=marketer)

    response = verified_client.post(
        f"/campaigns/{campaign.pk}/wizard/audience/",
        {"intent": "create_segment", "name": "Wisconsin", "op_main": "and", "op_nested": "or", "purpose": cpap.pk,
         "main-0-field": "state", "main-0-values": "wi"},
    )

    segment = Segment.objects.get()
    assert response["Location"] == f"/campaigns/{campaign.pk}/wizard/audience/"
    assert (segment.name, segment.rules, segment.created_by) == (
        "Wisconsin", {"op": "and", "rules": [{"field": "state", "in": ["WI"]}]}, marketer
    )
    assert Campaign.objects.get(pk=campaign.pk).segment == segment
    assert AuditEvent.objects.filter(action="segment.saved", object_id=str(segment.pk)).count() == 1
    page = verified_client.get(f"/campaigns/{campaign.pk}/wizard/audience/").content.decode()
    assert f'value="{segment.pk}" checked' in page
    assert 'data-count="covered">fewer than 11<' in _choice(page, str(segment.pk))


def test_an_invalid_inline_segment_is_not_saved_and_the_page_says_why(verified_client, cpap):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))

    response = verified_client.post(
        f"/campaigns/{campaign.pk}/wizard/audience/",
        {"intent": "create_segment", "name": "", "op_main": "and", "purpose": cpap.pk, "main-0-field": "sex"},
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "The segment was not saved" in page and "Rule 1: give at least one value." in page
    assert "<details class=\"card wizard-card wizard-inline-segment\" open" in page
    assert not Segment.objects.exists() and Campaign.objects.get(pk=campaign.pk).segment is None


# --- Step 3: blocks scoped by purpose ---------------------------------------------------------------------------


def test_the_content_step_offers_only_the_blocks_approved_for_the_purpose(verified_client, cpap):
    diabetes = purpose_make(name="Diabetes education")
    for_cpap = block_make(name="CPAP cushions", purposes=[cpap])
    for_diabetes = block_make(name="Glucose meters", purposes=[diabetes])
    for_all = block_make(name="Opening hours")
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))

    page = verified_client.get(f"/campaigns/{campaign.pk}/wizard/content/").content.decode()

    assert f'<option value="{for_cpap.pk}"' in page and f'<option value="{for_all.pk}"' in page
    assert f'<option value="{for_diabetes.pk}"' not in page and "Glucose meters" not in page
    assert f'data-library-block="{for_cpap.pk}"' in page and f'data-library-block="{for_all.pk}"' in page
    assert 'srcdoc="' in page  # each library block has its thumbnail


def test_a_block_for_another_purpose_is_refused_by_the_content_step_on_the_server(verified_client, cpap):
    diabetes = purpose_make(name="Diabetes education")
    for_diabetes = block_make(name="Glucose meters", purposes=[diabetes])
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))
    before = _actions(campaign.pk)

    response = verified_client.post(
        f"/campaigns/{campaign.pk}/wizard/content/",
        {"subject": "Fresh supplies", "body_text": "Hello.", "template": "", "block_1": for_diabetes.pk},
    )

    assert response.status_code == 200
    assert "That block is not approved for this campaign\u2019s purpose" in response.content.decode()
    assert not CampaignBlock.objects.filter(campaign=campaign).exists()
    assert _actions(campaign.pk) == before


def test_the_one_page_editor_refuses_a_block_for_another_purpose(verified_client, cpap):
    diabetes = purpose_make(name="Diabetes education")
    for_diabetes = block_make(name="Glucose meters", purposes=[diabetes])
    verified_client.sign_in(role="marketer")

    response = verified_client.post(
        "/campaigns/new/",
        {"name": "Sneaky", "purpose": cpap.pk, "segment": "", "subject": "S", "body_text": "B", "block_1": for_diabetes.pk},
    )

    assert response.status_code == 200
    assert "not approved for the campaign\u2019s purpose" in response.content.decode()
    assert f'data-purposes="{diabetes.pk}"' in response.content.decode()  # the page's script offers it only there
    assert not Campaign.objects.exists()


def test_submitting_content_with_a_block_for_another_purpose_is_refused_with_a_plain_message(cpap):
    """campaigns.content.content_problems (what campaign_submit checks): a block not approved for the purpose."""
    diabetes = purpose_make(name="Diabetes education")
    for_diabetes = block_make(name="Glucose meters", purposes=[diabetes])
    campaign = campaign_make(purpose=cpap)
    # Written by hand on purpose: no service lets a draft hold such a block; this is a row changed outside them.
    CampaignBlock.objects.create(campaign=campaign, block=for_diabetes, position=0)

    problems = content_problems(CampaignContent(purpose=cpap, subject="S", intro_text="Hi", blocks=(for_diabetes,)))
    with pytest.raises(ValidationError) as refused:
        campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)

    message = "Block 1 \u201cGlucose meters\u201d is not approved for \u201cCPAP supplies\u201d: remove it, or choose a block approved for this purpose."
    assert [problem.message for problem in problems] == [message]
    assert refused.value.messages == [message]
    assert Campaign.objects.get(pk=campaign.pk).status == "draft"
    refusal = AuditEvent.objects.get(action="campaign.submit_refused", object_id=str(campaign.pk))
    assert refusal.details == {"problems": ["block_wrong_purpose"], "fields": []}


def test_the_content_step_without_a_subject_says_so_and_keeps_what_was_typed(verified_client, cpap):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"), subject="Kept")

    response = verified_client.post(
        f"/campaigns/{campaign.pk}/wizard/content/", {"subject": "", "body_text": "Typed, not lost.", "template": ""}
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "Write a subject: it is what patients see first in their inbox." in page
    assert "Typed, not lost." in page
    assert Campaign.objects.get(pk=campaign.pk).subject == "Kept"


def test_saving_content_goes_on_to_the_review(verified_client, cpap):
    block = block_make(name="CPAP cushions", purposes=[cpap])
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))

    response = verified_client.post(
        f"/campaigns/{campaign.pk}/wizard/content/",
        {"subject": "Fresh supplies", "body_text": "Dear {{ first_name }},", "template": "", "block_1": block.pk},
    )

    campaign.refresh_from_db()
    assert response["Location"] == f"/campaigns/{campaign.pk}/wizard/review/"
    assert (campaign.subject, campaign.body_text) == ("Fresh supplies", "Dear {{ first_name }},")
    assert list(campaign.content_blocks.values_list("block_id", flat=True)) == [block.pk]


# --- Step 4: review and submit ---------------------------------------------------------------------------------


def test_r_small_cell_the_review_says_who_will_get_it_and_why_the_others_will_not(verified_client, cpap, illinois):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))
    verified_client.post(f"/campaigns/{campaign.pk}/wizard/audience/", {"segment": illinois.pk})

    page = verified_client.get(f"/campaigns/{campaign.pk}/wizard/review/").content.decode()

    assert 'data-count="covered">14<' in page
    assert f'data-count="matched">{WITHHELD}<' in page
    assert 'data-count="no_authorization">fewer than 11<' in page
    assert "No patient is named here." in page
    assert not any(text in page for text in PHI)


def test_submitting_from_the_review_sends_it_for_approval(verified_client, cpap):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))

    response = verified_client.post(f"/campaigns/{campaign.pk}/wizard/review/")

    assert response["Location"] == f"/campaigns/{campaign.pk}/"
    assert Campaign.objects.get(pk=campaign.pk).status == "submitted"
    assert _actions(campaign.pk)[-1] == "campaign.submitted"


def test_the_review_lists_what_stops_the_submission_and_a_refused_submit_changes_nothing(verified_client, cpap):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"), body_text="")

    page = verified_client.get(f"/campaigns/{campaign.pk}/wizard/review/").content.decode()
    response = verified_client.post(f"/campaigns/{campaign.pk}/wizard/review/")

    assert "There is nothing to send" in page and "It cannot be submitted yet" in page
    assert response.status_code == 200 and b"Not submitted:" in response.content
    assert Campaign.objects.get(pk=campaign.pk).status == "draft"
    assert _actions(campaign.pk)[-1] == "campaign.submit_refused"


@pytest.mark.parametrize("step", ["purpose", "audience", "content", "review"])
def test_a_submitted_campaign_is_not_changed_in_the_wizard(verified_client, cpap, step):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    before = _actions(campaign.pk)

    get = verified_client.get(f"/campaigns/{campaign.pk}/wizard/{step}/")
    post = verified_client.post(f"/campaigns/{campaign.pk}/wizard/{step}/", {"name": "Changed", "purpose": cpap.pk})

    assert get["Location"] == post["Location"] == f"/campaigns/{campaign.pk}/"
    assert Campaign.objects.get(pk=campaign.pk).name == campaign.name and _actions(campaign.pk) == before


def test_the_reviewers_comment_is_at_the_top_of_the_editor_and_of_each_step(verified_client, cpap):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    officer = staff_make(role="compliance officer")
    campaign_reject(actor=officer, campaign_id=campaign.pk, comment="Say which supplies the plan covers.")

    for path in ("edit", "wizard/purpose", "wizard/audience", "wizard/content", "wizard/review"):
        page = verified_client.get(f"/campaigns/{campaign.pk}/{path}/").content.decode()
        top = page.index("data-rejection-comment")
        assert top < page.index("<form", page.index("<main")), path
        assert "Say which supplies the plan covers." in page[top:] and officer.email in page[top:], path


def test_a_journey_step_does_not_exist_in_the_wizard(verified_client, cpap):
    campaign = campaign_make(purpose=cpap)
    Campaign.objects.filter(pk=campaign.pk).update(kind=Campaign.Kind.JOURNEY_STEP)  # a journey's step, by hand
    verified_client.sign_in(role="marketer")

    assert verified_client.get(f"/campaigns/{campaign.pk}/wizard/content/").status_code == 404


# --- Draft actions on the pages ---------------------------------------------------------------------------------


def test_duplicate_button_copies_the_campaign_and_opens_the_copy_in_the_wizard(verified_client, cpap):
    source = campaign_make(purpose=cpap)
    copier = verified_client.sign_in(role="marketer")

    response = verified_client.post(f"/campaigns/{source.pk}/duplicate/")

    copy = Campaign.objects.exclude(pk=source.pk).get()
    assert response["Location"] == f"/campaigns/{copy.pk}/wizard/purpose/"
    assert (copy.created_by, copy.name, copy.status) == (copier, f"{source.name} (copy)", "draft")


def test_delete_button_deletes_the_authors_draft(verified_client, cpap):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))

    response = verified_client.post(f"/campaigns/{campaign.pk}/delete/")

    assert response["Location"] == "/"
    assert not Campaign.objects.filter(pk=campaign.pk).exists()


def test_delete_of_a_submitted_campaign_is_refused_with_a_message(verified_client, cpap):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)

    response = verified_client.post(f"/campaigns/{campaign.pk}/delete/", follow=True)

    assert "Not deleted: Only a draft can be deleted; this campaign is submitted for approval." in response.content.decode()
    assert Campaign.objects.filter(pk=campaign.pk, status="submitted").exists()


def test_withdraw_button_makes_the_submission_a_draft_again(verified_client, cpap):
    campaign = campaign_make(purpose=cpap, author=verified_client.sign_in(role="marketer"))
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)

    detail = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    response = verified_client.post(f"/campaigns/{campaign.pk}/withdraw/")

    assert 'data-action="withdraw"' in detail and 'data-action="delete"' not in detail
    assert response["Location"] == f"/campaigns/{campaign.pk}/wizard/review/"
    assert Campaign.objects.get(pk=campaign.pk).status == "draft"


def test_another_marketer_is_not_offered_withdraw_and_is_refused_it(verified_client, cpap):
    campaign = campaign_make(purpose=cpap)
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    verified_client.sign_in(role="marketer")

    detail = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    response = verified_client.post(f"/campaigns/{campaign.pk}/withdraw/", follow=True)

    assert 'data-action="withdraw"' not in detail
    assert "Not withdrawn: Only the campaign\u2019s author or an administrator may withdraw it." in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == "submitted"


def test_a_sent_campaign_never_shows_edit_in_its_draft_actions_nor_in_the_list(verified_client, cpap):
    campaign = campaign_make(purpose=cpap)
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    campaign_approve(actor=staff_make(role="compliance officer"), campaign_id=campaign.pk)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    draft = campaign_make(purpose=cpap)
    verified_client.sign_in(role="marketer")

    detail = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    listing = verified_client.get("/").content.decode()

    actions = detail[detail.index("data-draft-actions") : detail.index("</div>", detail.index("data-draft-actions"))]
    assert 'data-action="edit"' not in actions and 'data-action="duplicate"' in actions
    row = listing[listing.index(f'data-campaign="{campaign.pk}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-action="edit"' not in row and 'data-action="content"' in row
    draft_row = listing[listing.index(f'data-campaign="{draft.pk}"') :]
    assert 'data-action="edit"' in draft_row[: draft_row.index("</tr>")]
