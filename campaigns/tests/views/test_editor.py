"""Campaign editor and review pages: write a draft, submit, review with exact counts, approve or reject, send now.
DESIGN.md: the approver is never the author; an edit after approval voids the approval; approving and sending
ask for the second factor again (R-SEC-MFA). Every action audited with ids and codes only."""
from unittest import mock

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import TestCase
from django.urls import reverse

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery
from campaigns.services import library as services_content
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_create, campaign_reject, campaign_submit
from campaigns.services.segments import segment_save
from campaigns.tests.factories import block_make, campaign_approved_make, campaign_make, template_make
from conftest import totp_code
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _actions(campaign) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="campaign", object_id=str(campaign.pk)).order_by("id").values_list(
            "action", flat=True
        )
    )


def _form(purpose, segment=None, **overrides) -> dict:
    data = {
        "name": "Spring CPAP refill",
        "purpose": purpose.pk,
        "segment": segment.pk if segment else "",
        "subject": "Time to replace your CPAP mask",
        "body_text": "Your supplies may be due for replacement.",
    }
    return data | overrides


@pytest.fixture
def purpose():
    return purpose_make(name="CPAP supplies")


def test_urls_are_named_in_the_campaigns_namespace():
    assert reverse("campaigns:campaign_new") == "/campaigns/new/"
    assert reverse("campaigns:campaign_edit", args=[3]) == "/campaigns/3/edit/"
    assert reverse("campaigns:campaign_submit", args=[3]) == "/campaigns/3/submit/"
    assert reverse("campaigns:campaign_review", args=[3]) == "/campaigns/3/review/"
    assert reverse("campaigns:campaign_launch_now", args=[3]) == "/campaigns/3/launch/"


def test_marketer_creates_edits_and_submits_a_draft(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")
    segment = segment_save(actor=marketer, name="Illinois", rules={"op": "and", "rules": [{"field": "state", "in": ["IL"]}]})

    assert verified_client.get("/campaigns/new/").status_code == 200
    response = verified_client.post("/campaigns/new/", _form(purpose, segment))
    campaign = Campaign.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/campaigns/{campaign.pk}/edit/"
    assert (campaign.status, campaign.segment_id, campaign.created_by_id) == ("draft", segment.pk, marketer.pk)

    response = verified_client.post(f"/campaigns/{campaign.pk}/edit/", _form(purpose, None, subject="New subject"))
    campaign.refresh_from_db()
    assert response.status_code == 302
    assert (campaign.subject, campaign.segment_id, campaign.status) == ("New subject", None, "draft")

    response = verified_client.post(f"/campaigns/{campaign.pk}/submit/")
    campaign.refresh_from_db()
    assert response.status_code == 302 and campaign.status == "submitted"
    assert _actions(campaign) == ["campaign.created", "campaign.segment_set", "campaign.updated", "campaign.submitted"]
    updated = AuditEvent.objects.get(action="campaign.updated")
    assert updated.details == {"changed": ["segment", "subject"], "purpose": purpose.pk, "segment": None}


def test_missing_fields_are_reported_and_nothing_is_created(verified_client, purpose):
    verified_client.sign_in(role="marketer")

    response = verified_client.post("/campaigns/new/", _form(purpose, subject="", body_text=""))

    assert response.status_code == 200
    assert b"Write a subject: it is what patients see first in their inbox." in response.content
    assert not Campaign.objects.exists()


def test_submitted_campaign_cannot_be_edited(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")
    campaign = campaign_make(purpose=purpose, author=marketer)
    campaign_submit(actor=marketer, campaign_id=campaign.pk)

    page = verified_client.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    response = verified_client.post(f"/campaigns/{campaign.pk}/edit/", _form(purpose, subject="Sneaky"))

    assert "cannot be edited" in page
    campaign.refresh_from_db()
    assert response.status_code == 200 and campaign.subject == "News for you"
    assert "campaign.updated" not in _actions(campaign)


def test_edit_after_approval_voids_the_approval(verified_client, purpose):
    """DESIGN.md: "an edit after approval voids the approval" — the campaign is a draft again, audited."""
    marketer = verified_client.sign_in(role="marketer")
    campaign = campaign_approved_make(purpose=purpose, author=marketer)

    response = verified_client.post(f"/campaigns/{campaign.pk}/edit/", _form(purpose, body_text="Changed."))

    campaign.refresh_from_db()
    assert response.status_code == 302
    assert (campaign.status, campaign.body_text) == ("draft", "Changed.")
    assert _actions(campaign)[-2:] == ["campaign.updated", "campaign.approval_voided"]
    assert AuditEvent.objects.get(action="campaign.approval_voided").details == {"from": "approved", "to": "draft"}
    assert (campaign.approved_by_id, campaign.approved_at) == (None, None)  # nobody approved this version
    with pytest.raises(ValidationError):
        campaign_launch(actor=staff_make(role="compliance officer"), campaign_id=campaign.pk)


def test_saving_an_approved_campaign_unchanged_keeps_the_approval(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")
    campaign = campaign_approved_make(purpose=purpose, author=marketer, name="Same")
    same = _form(purpose, name="Same", subject=campaign.subject, body_text=campaign.body_text)

    verified_client.post(f"/campaigns/{campaign.pk}/edit/", same)

    campaign.refresh_from_db()
    assert campaign.status == "approved"
    assert "campaign.approval_voided" not in _actions(campaign)


@pytest.fixture
def submitted(purpose):
    """Submitted by its marketer author; Illinois segment of 12 covered and 2 without authorization."""
    author = staff_make(role="marketer")
    segment = segment_save(actor=author, name="Illinois", rules={"op": "and", "rules": [{"field": "state", "in": ["IL"]}]})
    for _ in range(12):
        authorization_make(patient=patient_make(state="IL", full_name="Margaret Thornbury"), purpose=purpose)
    for _ in range(2):
        patient_make(state="IL")
    authorization_make(patient=patient_make(state="WI"), purpose=purpose)
    campaign = campaign_make(purpose=purpose, author=author)
    Campaign.objects.filter(pk=campaign.pk).update(segment=segment)
    campaign_submit(actor=author, campaign_id=campaign.pk)
    return campaign


def test_compliance_officer_reviews_content_and_exact_live_counts(verified_client, submitted):
    verified_client.sign_in(role="compliance officer")

    page = verified_client.get(f"/campaigns/{submitted.pk}/review/").content.decode()

    assert "Illinois" in page and "CPAP supplies" in page and submitted.body_text in page
    assert 'data-count="matched">14<' in page
    assert 'data-count="covered">12<' in page
    assert 'data-count="no_authorization">2<' in page
    assert "Thornbury" not in page


@pytest.mark.parametrize("path", ["review/", "launch/"])
def test_marketer_gets_404_on_review_and_send(verified_client, submitted, path):
    verified_client.sign_in(role="marketer")

    response = verified_client.get(f"/campaigns/{submitted.pk}/{path}") if path == "review/" else verified_client.post(
        f"/campaigns/{submitted.pk}/{path}", {"launch-code": "123456"}
    )

    assert response.status_code == 404


def test_r_sec_mfa_approve_needs_the_second_factor_re_entered(verified_client, submitted):
    """R-SEC-MFA: a wrong code approves nothing and is audited; the right one approves."""
    officer = verified_client.sign_in(role="compliance officer")
    code = totp_code(officer)

    wrong = verified_client.post(
        f"/campaigns/{submitted.pk}/review/", {"decision": "approve", "approve-code": _wrong(code)}
    )

    submitted.refresh_from_db()
    assert wrong.status_code == 200 and b"That code did not work" in wrong.content
    assert submitted.status == "submitted"
    failed = AuditEvent.objects.get(action="mfa.reentry_failed")
    assert (failed.actor_id, failed.object_id, failed.details) == (officer.pk, str(submitted.pk), {"for": "campaign.approve"})

    right = verified_client.post(f"/campaigns/{submitted.pk}/review/", {"decision": "approve", "approve-code": totp_code(officer)})

    submitted.refresh_from_db()
    assert right.status_code == 302 and submitted.status == "approved"
    approved = AuditEvent.objects.get(action="campaign.approved")
    assert approved.actor_id == officer.pk


def test_author_cannot_approve_their_own_campaign(verified_client, purpose):
    """DESIGN.md: the approver is never the author — a clear refusal, not a 500, and nothing approved."""
    officer = verified_client.sign_in(role="compliance officer")
    campaign = campaign_make(purpose=purpose, author=officer)
    campaign_submit(actor=officer, campaign_id=campaign.pk)

    page = verified_client.get(f"/campaigns/{campaign.pk}/review/").content.decode()
    response = verified_client.post(f"/campaigns/{campaign.pk}/review/", {"decision": "approve", "approve-code": totp_code(officer)})

    campaign.refresh_from_db()
    assert "you cannot approve it" in page
    assert response.status_code == 403 and b"you cannot approve it" in response.content
    assert campaign.status == "submitted"
    assert "campaign.approved" not in _actions(campaign)


def test_reject_requires_a_comment_and_audits_only_its_length(verified_client, submitted):
    verified_client.sign_in(role="compliance officer")

    empty = verified_client.post(f"/campaigns/{submitted.pk}/review/", {"decision": "reject", "comment": "  "})
    submitted.refresh_from_db()
    assert empty.status_code == 200 and b"the comment is required" in empty.content
    assert submitted.status == "submitted"

    comment = "Mentions a diagnosis in the subject."
    response = verified_client.post(f"/campaigns/{submitted.pk}/review/", {"decision": "reject", "comment": comment})

    submitted.refresh_from_db()
    assert response.status_code == 302 and submitted.status == "rejected"
    event = AuditEvent.objects.get(action="campaign.rejected")
    assert event.details == {"from": "submitted", "to": "rejected", "comment_length": len(comment)}
    assert "diagnosis" not in str(AuditEvent.objects.values_list("details", flat=True))


def test_rejected_campaign_can_be_edited_and_resubmitted(verified_client, submitted):
    campaign_reject(actor=staff_make(role="compliance officer"), campaign_id=submitted.pk, comment="Too long.")
    verified_client.sign_in(user=submitted.created_by)

    verified_client.post(f"/campaigns/{submitted.pk}/edit/", _form(submitted.purpose, submitted.segment, body_text="Short."))
    verified_client.post(f"/campaigns/{submitted.pk}/submit/")

    submitted.refresh_from_db()
    assert (submitted.status, submitted.body_text) == ("submitted", "Short.")


def test_send_now_needs_the_code_then_launches_and_shows_progress(verified_client, purpose):
    """R-SEC-MFA on sending: a wrong code launches nothing; the right one materialises deliveries and redirects
    to the campaign page with its progress bar."""
    authorization_make(patient=patient_make(), purpose=purpose)
    patient_make()
    campaign = campaign_approved_make(purpose=purpose)
    officer = verified_client.sign_in(role="compliance officer")
    code = totp_code(officer)

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay") as wake:
        wrong = verified_client.post(f"/campaigns/{campaign.pk}/launch/", {"launch-code": _wrong(code)})
        assert wrong.status_code == 200 and b"That code did not work" in wrong.content
        assert not Delivery.objects.exists()
        assert AuditEvent.objects.get(action="mfa.reentry_failed").details == {"for": "campaign.launch"}

        with TestCase.captureOnCommitCallbacks(execute=True):
            right = verified_client.post(f"/campaigns/{campaign.pk}/launch/", {"launch-code": totp_code(officer)})

    campaign.refresh_from_db()
    assert right.status_code == 302 and right["Location"] == f"/campaigns/{campaign.pk}/"
    assert campaign.status == "sending"
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["blocked", "queued"]
    wake.assert_called_once_with(campaign.pk)
    assert AuditEvent.objects.get(action="campaign.launched").actor_id == officer.pk
    assert b'role="progressbar"' in verified_client.get(right["Location"]).content


def test_send_now_refuses_a_campaign_that_is_not_approved(verified_client, submitted):
    officer = verified_client.sign_in(role="administrator")

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay") as wake:
        response = verified_client.post(f"/campaigns/{submitted.pk}/launch/", {"launch-code": totp_code(officer)})

    assert response.status_code == 200 and b"cannot be launched" in response.content
    assert not Delivery.objects.exists()
    wake.assert_not_called()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_chromium_marketer_writes_and_submits_then_officer_approves(page, live_server):
    """The editor and review pages as people use them (screenshots: campaign-editor, campaign-review)."""
    from conftest import browser_sign_in, screenshot

    purpose = purpose_make(name="CPAP supplies")
    for _ in range(12):
        authorization_make(patient=patient_make(state="IL"), purpose=purpose)
    marketer = staff_make(role="marketer", with_totp=True)
    browser_sign_in(page, live_server, marketer)
    page.goto(f"{live_server.url}/campaigns/new/")
    page.fill("input[name=name]", "Spring CPAP refill")
    page.select_option("select[name=purpose]", str(purpose.pk))
    page.fill("input[name=subject]", "Time to replace your CPAP mask")
    page.fill("textarea[name=body_text]", "Your CPAP supplies may be due for replacement. Reply to order.")
    page.click("main form.card button[type=submit] >> nth=0")
    page.wait_for_url("**/edit/")
    screenshot(page, "campaign-editor")
    page.click("text=Submit for approval")
    page.wait_for_selector("text=Submitted for approval. A compliance officer")
    campaign = Campaign.objects.get()
    assert campaign.status == "submitted"

    page.context.clear_cookies()
    officer = staff_make(role="compliance officer", with_totp=True)
    browser_sign_in(page, live_server, officer)
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/review/")
    assert page.inner_text("[data-count=covered]") == "12"
    page.fill("input[name=approve-code]", totp_code(officer))
    page.click("button[value=approve]")
    page.wait_for_selector("text=Approved. It can be sent now.")
    screenshot(page, "campaign-review")
    campaign.refresh_from_db()
    assert campaign.status == "approved"


# --- Content: template, approved blocks, merge fields, preview, test send (ADR 0005) -----------------------------


def _scoped_purpose(merge_fields=("first_name", "email")):
    """A purpose whose current published form lists `merge_fields`."""
    purpose = purpose_make(name="CPAP supplies")
    form_published_make(purpose, merge_fields=list(merge_fields))
    return purpose


def test_marketer_saves_a_template_and_approved_blocks_in_order(verified_client):
    purpose = _scoped_purpose()
    template, first, second = template_make(name="Brand"), block_make(name="Offer"), block_make(name="Hours")
    verified_client.sign_in(role="marketer")

    response = verified_client.post(
        "/campaigns/new/",
        _form(purpose, template=template.pk, body_text="Dear {{ first_name }},", block_1=second.pk, block_3=first.pk),
    )

    campaign = Campaign.objects.get()
    assert response.status_code == 302
    assert campaign.template_id == template.pk and campaign.body_text == "Dear {{ first_name }},"
    assert list(campaign.content_blocks.values_list("block_id", "position")) == [(second.pk, 0), (first.pk, 1)]
    assert AuditEvent.objects.get(action="campaign.created").details == {
        "purpose": purpose.code, "template": template.pk, "blocks": [second.pk, first.pk]
    }

    verified_client.post(
        f"/campaigns/{campaign.pk}/edit/",
        _form(purpose, template="", body_text="Dear {{ first_name }},", block_1=first.pk),
    )
    campaign.refresh_from_db()
    assert campaign.template_id is None
    assert list(campaign.content_blocks.values_list("block_id", flat=True)) == [first.pk]
    assert AuditEvent.objects.get(action="campaign.updated").details == {
        "changed": ["template", "blocks"],
        "purpose": purpose.pk,
        "segment": None,
        "template": None,
        "blocks": [first.pk],
    }


def test_marketer_cannot_pick_a_draft_or_retired_block_or_template(verified_client):
    purpose = _scoped_purpose()
    draft = block_make(name="Not yet", approved=False)
    retired_template = template_make(name="Old brand")
    services_content.library_item_retire(actor=staff_make(role="administrator"), kind="template",
                                         item_id=retired_template.pk)
    marketer = verified_client.sign_in(role="marketer")

    response = verified_client.post("/campaigns/new/", _form(purpose, block_1=draft.pk, template=retired_template.pk))

    assert response.status_code == 200
    assert response.content.decode().count("not an approved item of the content library") == 2
    assert not Campaign.objects.exists()
    with pytest.raises(ValidationError, match="is not approved"):
        campaign_create(actor=marketer, name="x", purpose=purpose, subject="s", body_text="b", blocks=[draft])


def test_subject_with_a_merge_field_is_refused_r_no_phi_leak(verified_client):
    """R-NO-PHI-LEAK: no patient data in subjects, so no merge field there."""
    purpose = _scoped_purpose()
    verified_client.sign_in(role="marketer")

    response = verified_client.post("/campaigns/new/", _form(purpose, subject="For {{ first_name }}"))

    assert response.status_code == 200
    assert "merge fields are not allowed in the subject" in response.content.decode()
    assert not Campaign.objects.exists()


def test_template_tricks_in_the_introduction_are_refused_at_save(verified_client):
    purpose = _scoped_purpose()
    verified_client.sign_in(role="marketer")

    response = verified_client.post("/campaigns/new/", _form(purpose, body_text="Hi {{ first_name.__class__ }}"))

    assert response.status_code == 200
    assert "Introduction, line 1: {{ first_name.__class__ }} is not a merge field" in response.content.decode()
    assert not Campaign.objects.exists()


def test_r_send_scope_a_field_the_form_does_not_list_cannot_be_submitted(verified_client):
    """R-SEND-SCOPE: the purpose's current form lists first_name and email; a campaign using last_name is refused
    at submission with a message naming the field, stays a draft, and the refusal is audited (codes only)."""
    purpose = _scoped_purpose(("first_name", "email"))
    block = block_make(html="<p>Dear {{ first_name }} {{ last_name }},</p>")
    marketer = verified_client.sign_in(role="marketer")
    campaign = campaign_make(purpose=purpose, author=marketer, body_text="", blocks=[block])

    response = verified_client.post(f"/campaigns/{campaign.pk}/submit/")

    campaign.refresh_from_db()
    assert response.status_code == 302 and campaign.status == "draft"
    page = verified_client.get(response["Location"]).content.decode()
    assert "Not submitted: The content uses {{ last_name }}, but the authorization form for" in page
    assert "(version 1) does not list it; this purpose allows only: {{ first_name }}, {{ email }}. A message may use " in (
        page
    )
    assert "(HIPAA, 45 CFR 164.508(c)(1)(i))" in page and "R-SEND-SCOPE" not in page
    refusal = AuditEvent.objects.get(action="campaign.submit_refused")
    assert refusal.details == {"problems": ["merge_field_out_of_scope"], "fields": ["last_name"]}
    assert "campaign.submitted" not in _actions(campaign)


def test_r_send_scope_a_field_the_form_lists_can_be_submitted():
    purpose = _scoped_purpose(("first_name", "email"))
    campaign = campaign_make(purpose=purpose, body_text="Dear {{ first_name }}, write to us from {{ email }}.")

    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert campaign.status == "submitted"


def test_r_send_scope_the_current_form_decides_not_an_older_one():
    """R-SEND-SCOPE: the purpose's *current* published version; an older version that listed the field does not
    count."""
    purpose = _scoped_purpose(("first_name", "last_name"))
    form_published_make(purpose, merge_fields=["first_name"])
    campaign = campaign_make(purpose=purpose, body_text="Dear {{ last_name }}")

    with pytest.raises(ValidationError, match=r"\{\{ last_name \}\}.*version 2"):
        campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)


def test_r_send_scope_without_a_published_form_no_field_may_be_used(purpose):
    campaign = campaign_make(purpose=purpose, body_text="Dear {{ first_name }}")

    with pytest.raises(ValidationError, match="has no published authorization form, so no merge field may be used"):
        campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_a_retired_block_or_empty_content_cannot_be_submitted():
    purpose = _scoped_purpose()
    block = block_make(name="Winter offer")
    with_block = campaign_make(purpose=purpose, body_text="", blocks=[block])
    empty = campaign_make(purpose=purpose, body_text="  ")
    services_content.library_item_retire(actor=staff_make(role="compliance officer"), kind="block", item_id=block.pk)

    with pytest.raises(ValidationError, match="Block 1 \u201cWinter offer\u201d is retired"):
        campaign_submit(actor=with_block.created_by, campaign_id=with_block.pk)
    with pytest.raises(ValidationError, match="There is nothing to send"):
        campaign_submit(actor=empty.created_by, campaign_id=empty.pk)
    assert [event.details["problems"] for event in AuditEvent.objects.filter(action="campaign.submit_refused")] == [
        ["block_not_approved"], ["content_empty"]
    ]


def test_live_preview_uses_the_synthetic_patient_never_a_real_one(verified_client):
    """R-MIN-NECESSARY, R-NO-PHI-LEAK: the preview fills merge fields with made-up values; no patient's data is
    read, even when real patients exist."""
    purpose = _scoped_purpose(("first_name", "email"))
    real = patient_make(full_name="Margaret Thornbury", email="margaret.thornbury@example.org")
    authorization_make(patient=real, purpose=purpose)
    block = block_make(html="<p>Your address: {{ email }}</p>")
    verified_client.sign_in(role="marketer")

    with mock.patch("campaigns.content.merge_values_for_deliveries") as values:
        response = verified_client.post(
            "/campaigns/preview/",
            _form(purpose, name="", body_text="Dear {{ first_name }},\n\nSee below.", block_1=block.pk,
                  subject="Masks are in"),
        )

    page = response.content.decode()
    values.assert_not_called()
    assert response.status_code == 200
    assert "Dear Alex," in page and "alex.sample@example.org" in page
    assert "Margaret" not in page and "Thornbury" not in page and "margaret.thornbury" not in page
    assert 'data-preview-subject>Masks are in<' in page
    assert "<code>{{ first_name }}</code>, <code>{{ email }}</code>" in page  # what this purpose allows
    assert "cannot be submitted" not in page


def test_live_preview_shows_scope_problems_and_refuses_tricks(verified_client):
    purpose = _scoped_purpose(("first_name",))
    verified_client.sign_in(role="marketer")

    out_of_scope = verified_client.post("/campaigns/preview/", _form(purpose, body_text="Hi {{ last_name }}"))
    trick = verified_client.post("/campaigns/preview/", _form(purpose, body_text="{{ cycler.__init__ }}"))
    out_of_scope, trick = out_of_scope.content.decode(), trick.content.decode()

    assert "It cannot be submitted yet" in out_of_scope and "{{ last_name }}" in out_of_scope
    assert "Hi Sample" in out_of_scope  # still previewed, with the made-up value
    assert "This content cannot be shown or sent as it is" in trick
    assert "{{ cycler.__init__ }} is not a merge field" in trick


def test_preview_offers_only_approved_blocks(verified_client):
    purpose = _scoped_purpose()
    draft = block_make(html="<p>Unapproved words</p>", approved=False)
    verified_client.sign_in(role="marketer")

    page = verified_client.post("/campaigns/preview/", _form(purpose, block_1=draft.pk)).content.decode()

    assert "Unapproved words" not in page


def test_test_send_goes_only_to_the_users_own_verified_address(verified_client):
    """The test message: one, to the signed-in user's own verified address whatever the request says, [TEST] in
    the subject, the synthetic patient's values, the same assembled bytes as a real message; audited."""
    purpose = _scoped_purpose()
    real = patient_make(full_name="Margaret Thornbury")
    authorization_make(patient=real, purpose=purpose)
    marketer = verified_client.sign_in(role="marketer")
    campaign = campaign_make(purpose=purpose, author=marketer, body_text="Dear {{ first_name }},",
                             blocks=[block_make(html="<p>Masks are in.</p>")])

    response = verified_client.post(
        f"/campaigns/{campaign.pk}/test-send/", {"to": "someone.else@example.org", "email": "x@example.org"}
    )

    assert response.status_code == 302
    (message,) = mail.outbox
    assert message.to == [marketer.email]
    assert message.subject == "[TEST] News for you"
    assert "Dear Alex," in message.body and "Masks are in." in message.body and "Thornbury" not in message.body
    raw = message.message().as_bytes()
    assert f"To: {marketer.email}".encode() in raw and b"someone.else" not in raw
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    event = AuditEvent.objects.get(action="campaign.test_sent")
    assert (event.actor_id, event.object_id) == (marketer.pk, str(campaign.pk))
    assert event.details == {"email_address": marketer.emailaddress_set.get().pk}
    page = verified_client.get(response["Location"]).content.decode()
    assert f"A test of the saved version was sent to {marketer.email}" in page
    assert not Delivery.objects.exists()  # no patient, no delivery


def test_test_send_refused_without_a_verified_address(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")
    marketer.emailaddress_set.update(verified=False)
    campaign = campaign_make(purpose=purpose, author=marketer)

    response = verified_client.post(f"/campaigns/{campaign.pk}/test-send/")

    assert mail.outbox == []
    assert "no verified email address" in verified_client.get(response["Location"]).content.decode()
    assert not AuditEvent.objects.filter(action="campaign.test_sent").exists()


def test_test_sends_are_limited_per_user(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")
    campaign = campaign_make(purpose=purpose, author=marketer)

    for _ in range(services_content.TEST_SEND_LIMIT + 1):
        verified_client.post(f"/campaigns/{campaign.pk}/test-send/")

    assert len(mail.outbox) == services_content.TEST_SEND_LIMIT


def test_editor_page_shows_the_saved_preview_and_the_test_address(verified_client):
    purpose = _scoped_purpose()
    marketer = verified_client.sign_in(role="marketer")
    campaign = campaign_make(purpose=purpose, author=marketer, body_text="Dear {{ first_name }},",
                             template=template_make(header_html="<h1>Riverside Health</h1>"))

    page = verified_client.get(f"/campaigns/{campaign.pk}/edit/").content.decode()

    assert "Dear Alex," in page and "Riverside Health</h1>" in page.replace("&lt;", "<").replace("&gt;", ">")
    assert f"Send a test to {marketer.email}" in page
    assert 'name="block_1"' in page and 'name="block_2"' in page


def test_content_preview_tag_renders_a_saved_campaign_for_the_review_page():
    from django.template import Context, Template

    campaign = campaign_make(purpose=_scoped_purpose(), body_text="Dear {{ first_name }},")

    html = Template("{% load campaign_content %}{% content_preview campaign %}").render(Context({"campaign": campaign}))

    assert "data-preview-subject>News for you<" in html and "Dear Alex," in html


def test_the_one_page_editors_segment_picker_names_each_choice_with_who_would_get_it(verified_client):
    """Issue 17: the counts the wizard's picker shows, in the one-page editor too: for the purpose on the page, how
    many each choice would reach (exact for a compliance officer), and again for another purpose when it changes."""
    officer = verified_client.sign_in(role="compliance officer")
    cpap, diabetes = purpose_make(name="CPAP supplies"), purpose_make(name="Diabetes classes")
    for state in ["IL"] * 12 + ["WI"] * 3:
        authorization_make(patient=patient_make(state=state), purpose=cpap)
    illinois = segment_save(actor=officer, name="Illinois", rules={"op": "and", "rules": [{"field": "state", "in": ["IL"]}]})
    campaign = campaign_create(actor=officer, name="Masks", purpose=cpap, subject="New masks", body_text="Hello")

    page = verified_client.get(f"/campaigns/{campaign.pk}/edit/").content.decode()

    assert "Every patient (no segment) · 15 would get it</option>" in page
    assert f'<option value="{illinois.pk}">Illinois · 12 would get it</option>' in page
    assert 'data-audience-url="/campaigns/audience-options/"' in page

    other = verified_client.get(f"/campaigns/audience-options/?purpose={diabetes.pk}").json()
    assert other == {"options": [
        {"value": "", "label": "Every patient (no segment) · 0 would get it"},
        {"value": str(illinois.pk), "label": "Illinois · 0 would get it"},
    ]}


def test_r_small_cell_a_marketer_reads_the_pickers_small_counts_withheld(verified_client):
    marketer = verified_client.sign_in(role="marketer")
    cpap = purpose_make(name="CPAP supplies")
    for _ in range(4):
        authorization_make(patient=patient_make(state="IL"), purpose=cpap)
    segment_save(actor=marketer, name="Illinois", rules={"op": "and", "rules": [{"field": "state", "in": ["IL"]}]})

    options = verified_client.get(f"/campaigns/audience-options/?purpose={cpap.pk}").json()["options"]

    assert [option["label"] for option in options] == [
        "Every patient (no segment) · fewer than 11 would get it", "Illinois · fewer than 11 would get it"
    ]


@pytest.mark.parametrize("query", ["", "?purpose=", "?purpose=abc", "?purpose=999999999", "?purpose=-1"])
def test_the_picker_counts_refuse_a_missing_or_unknown_purpose_clearly(verified_client, query):
    verified_client.sign_in(role="marketer")
    response = verified_client.get(f"/campaigns/audience-options/{query}")
    assert response.status_code == 400 and response.json() == {"error": "Choose a purpose first."}
