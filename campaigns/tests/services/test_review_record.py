"""The review is stored: who approved and when; a rejection's comment, who wrote it and when, shown to the author on
their campaign page and to reviewers on the review page. The audit trail records the comment's length only
(R-NO-PHI-LEAK: free text never reaches the audit details)."""
import pytest
from django.core.exceptions import PermissionDenied

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Campaign
from campaigns.services.lifecycle import campaign_approve, campaign_reject, campaign_submit
from campaigns.tests.factories import campaign_make
from conftest import totp_code
from consent.tests.factories import purpose_make

pytestmark = pytest.mark.django_db

COMMENT = "The subject line promises a cure. Say \u201chelps manage\u201d instead, and drop the exclamation marks."


@pytest.fixture
def submitted():
    author = staff_make(role="marketer")
    campaign = campaign_make(purpose=purpose_make(name="CPAP supplies"), author=author)
    campaign_submit(actor=author, campaign_id=campaign.pk)
    return campaign


def test_approval_records_the_approver_and_the_time(verified_client, submitted):
    officer = verified_client.sign_in(role="compliance officer")

    response = verified_client.post(
        f"/campaigns/{submitted.pk}/review/", {"decision": "approve", "approve-code": totp_code(officer)}
    )

    submitted.refresh_from_db()
    assert response.status_code == 302
    assert (submitted.status, submitted.approved_by_id) == ("approved", officer.pk)
    assert submitted.approved_at is not None
    assert AuditEvent.objects.get(action="campaign.approved").details == {"from": "submitted", "to": "approved"}
    page = verified_client.get(f"/campaigns/{submitted.pk}/").content.decode()
    assert f"Approved by {officer.email}" in page


def test_the_author_cannot_approve_and_no_approver_is_recorded(submitted):
    """DESIGN.md: the approver is never the author, even an author who is a compliance officer."""
    officer = staff_make(role="compliance officer")
    own = campaign_make(purpose=submitted.purpose, author=officer)
    campaign_submit(actor=officer, campaign_id=own.pk)

    with pytest.raises(PermissionDenied):
        campaign_approve(actor=officer, campaign_id=own.pk)

    own.refresh_from_db()
    assert (own.status, own.approved_by_id, own.approved_at) == ("submitted", None, None)
    assert not AuditEvent.objects.filter(action="campaign.approved").exists()


def test_r_no_phi_leak_rejection_stores_the_comment_for_the_author_and_audits_its_length_only(verified_client, submitted):
    """R-NO-PHI-LEAK: the comment is stored on the campaign (with who and when) and the author reads it on their
    campaign page; the audit details hold its length, never its words."""
    officer = verified_client.sign_in(role="compliance officer")

    response = verified_client.post(f"/campaigns/{submitted.pk}/review/", {"decision": "reject", "comment": f"  {COMMENT}\n"})

    submitted.refresh_from_db()
    assert response.status_code == 302
    assert (submitted.status, submitted.review_comment, submitted.reviewed_by_id) == ("rejected", COMMENT, officer.pk)
    assert submitted.reviewed_at is not None
    event = AuditEvent.objects.get(action="campaign.rejected")
    assert event.details == {"from": "submitted", "to": "rejected", "comment_length": len(COMMENT)}
    assert "cure" not in str(list(AuditEvent.objects.values_list("details", flat=True)))

    verified_client.sign_in(user=submitted.created_by)
    page = verified_client.get(f"/campaigns/{submitted.pk}/").content.decode()
    assert "Rejected: the reviewer’s comment" in page
    assert "The subject line promises a cure." in page
    assert officer.email in page


def test_reviewer_sees_the_previous_rejection_when_the_campaign_comes_back(verified_client, submitted):
    first_reviewer = staff_make(role="compliance officer")
    campaign_reject(actor=first_reviewer, campaign_id=submitted.pk, comment=COMMENT)
    campaign_submit(actor=submitted.created_by, campaign_id=submitted.pk)
    verified_client.sign_in(role="administrator")

    page = verified_client.get(f"/campaigns/{submitted.pk}/review/").content.decode()

    assert "Rejected before, now submitted again" in page
    assert "The subject line promises a cure." in page and first_reviewer.email in page


def test_a_comment_is_required_and_an_empty_one_stores_nothing(submitted):
    officer = staff_make(role="compliance officer")

    with pytest.raises(Exception, match="the comment is required"):
        campaign_reject(actor=officer, campaign_id=submitted.pk, comment=" \n ")

    submitted.refresh_from_db()
    assert (submitted.status, submitted.review_comment, submitted.reviewed_by_id) == ("submitted", "", None)


def test_the_comment_is_shown_escaped(verified_client, submitted):
    campaign_reject(actor=staff_make(role="compliance officer"), campaign_id=submitted.pk, comment="<script>x()</script>")
    verified_client.sign_in(user=submitted.created_by)

    page = verified_client.get(f"/campaigns/{submitted.pk}/").content.decode()

    assert "<script>x()</script>" not in page and "&lt;script&gt;x()&lt;/script&gt;" in page


def test_an_approved_campaign_no_longer_shows_the_old_rejection_on_its_page(verified_client, submitted):
    campaign_reject(actor=staff_make(role="compliance officer"), campaign_id=submitted.pk, comment=COMMENT)
    campaign_submit(actor=submitted.created_by, campaign_id=submitted.pk)
    campaign_approve(actor=staff_make(role="compliance officer"), campaign_id=submitted.pk)
    verified_client.sign_in(user=submitted.created_by)

    page = verified_client.get(f"/campaigns/{submitted.pk}/").content.decode()

    assert Campaign.objects.get(pk=submitted.pk).status == "approved"
    assert "promises a cure" not in page and "Approved by" in page


def test_a_refused_self_approval_is_audited_and_changes_nothing(submitted):
    """Maker-checker (DESIGN.md: the approver is never the author; issue 11): the author's own attempt to approve
    is refused, the campaign stays submitted with no approver, and the refusal is on the audit trail."""
    author = submitted.created_by

    with pytest.raises(PermissionDenied):
        campaign_approve(actor=author, campaign_id=submitted.pk)

    submitted.refresh_from_db()
    assert (submitted.status, submitted.approved_by_id, submitted.approved_at) == ("submitted", None, None)
    refusal = AuditEvent.objects.get(action="campaign.approve_refused")
    assert (refusal.actor_id, refusal.object_type, refusal.object_id, refusal.details) == (
        author.pk, "campaign", str(submitted.pk), {"reason": "author"},
    )
    assert not AuditEvent.objects.filter(action="campaign.approved").exists()
