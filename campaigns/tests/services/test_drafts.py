"""campaigns.services.drafts (issue 17): the wizard's first save, duplicating any campaign, deleting a draft,
withdrawing a submission. Each is audited with ids and codes only; a refusal changes nothing and is audited too."""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Campaign, CampaignBlock
from campaigns.services import drafts
from campaigns.services.launch import campaign_launch
from campaigns.services.library import library_item_retire
from campaigns.services.lifecycle import campaign_approve, campaign_create_draft, campaign_reject, campaign_submit
from campaigns.services.segments import segment_save
from campaigns.tests.factories import block_make, campaign_make, template_make
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

ILLINOIS = {"op": "and", "rules": [{"field": "state", "in": ["IL"]}]}


def _events(campaign_id: int, action: str) -> list[dict]:
    return list(
        AuditEvent.objects.filter(object_type="campaign", object_id=str(campaign_id), action=action)
        .order_by("id")
        .values("actor_id", "details")
    )


@pytest.fixture
def purpose():
    purpose = purpose_make(name="CPAP supplies")
    form_published_make(purpose)
    return purpose


def test_draft_start_saves_a_draft_with_a_purpose_and_a_name_for_every_patient(purpose):
    marketer = staff_make()

    campaign = drafts.campaign_draft_start(actor=marketer, name="  Spring CPAP refresh ", purpose=purpose)

    campaign.refresh_from_db()
    assert (campaign.status, campaign.name, campaign.subject, campaign.segment_id, campaign.body_text) == (
        "draft", "Spring CPAP refresh", "Spring CPAP refresh", None, ""
    )
    assert _events(campaign.pk, "campaign.created") == [{"actor_id": marketer.pk, "details": {"purpose": purpose.code}}]


def test_changing_the_purpose_takes_out_the_blocks_not_approved_for_it(purpose):
    diabetes = purpose_make(name="Diabetes education")
    for_cpap = block_make(name="CPAP cushions", purposes=[purpose])
    for_all = block_make(name="Our opening hours")
    campaign = campaign_make(purpose=purpose, blocks=[for_cpap, for_all])

    updated, removed = drafts.campaign_draft_purpose_set(
        actor=campaign.created_by, campaign_id=campaign.pk, name="Diabetes week", purpose=diabetes
    )

    assert (updated.purpose_id, updated.name, removed) == (diabetes.pk, "Diabetes week", 1)
    assert list(CampaignBlock.objects.filter(campaign=campaign).values_list("block_id", flat=True)) == [for_all.pk]


def test_duplicate_copies_purpose_audience_and_content_of_a_sent_campaign_as_a_new_draft(purpose):
    author, copier = staff_make(), staff_make()
    segment = segment_save(actor=author, name="Illinois", rules=ILLINOIS)
    template = template_make()
    first, second = block_make(name="First"), block_make(name="Second")
    authorization_make(patient=patient_make(state="IL"), purpose=purpose)
    source = campaign_create_draft(
        actor=author, name="Spring refresh", purpose=purpose, segment=segment, subject="Fresh supplies",
        body_text="Hello.", template=template, blocks=[first, second],
    )
    campaign_submit(actor=author, campaign_id=source.pk)
    campaign_approve(actor=staff_make(role="compliance officer"), campaign_id=source.pk)
    campaign_launch(actor=None, campaign_id=source.pk)
    source.refresh_from_db()

    copy, left_out = drafts.campaign_duplicate(actor=copier, campaign_id=source.pk)

    copy.refresh_from_db()
    assert left_out == 0
    assert (copy.status, copy.name, copy.created_by, copy.purpose_id, copy.segment_id) == (
        "draft", f"{source.name} (copy)", copier, purpose.pk, segment.pk
    )
    assert (copy.subject, copy.body_text, copy.template_id) == ("Fresh supplies", "Hello.", template.pk)
    assert list(copy.content_blocks.values_list("block_id", flat=True)) == [first.pk, second.pk]
    assert (copy.approved_by, copy.launched_at, copy.deliveries.count()) == (None, None, 0)
    assert _events(copy.pk, "campaign.duplicated") == [
        {"actor_id": copier.pk, "details": {"source": source.pk, "left_out": 0}}
    ]
    assert _events(copy.pk, "campaign.segment_set") == [{"actor_id": copier.pk, "details": {"segment": segment.pk}}]


def test_duplicate_leaves_out_a_block_retired_since(purpose):
    officer = staff_make(role="compliance officer")
    kept, retired = block_make(name="Kept", officer=officer), block_make(name="Retired", officer=officer)
    source = campaign_make(purpose=purpose, blocks=[kept, retired])
    library_item_retire(actor=officer, kind="block", item_id=retired.pk)

    copy, left_out = drafts.campaign_duplicate(actor=source.created_by, campaign_id=source.pk)

    assert left_out == 1
    assert list(copy.content_blocks.values_list("block_id", flat=True)) == [kept.pk]


def test_author_deletes_a_draft_and_the_audit_trail_keeps_that_it_existed(purpose):
    campaign = campaign_make(purpose=purpose, blocks=[block_make()])

    drafts.campaign_draft_delete(actor=campaign.created_by, campaign_id=campaign.pk)

    assert not Campaign.objects.filter(pk=campaign.pk).exists()
    assert not CampaignBlock.objects.filter(campaign_id=campaign.pk).exists()
    assert _events(campaign.pk, "campaign.draft_deleted") == [
        {"actor_id": campaign.created_by_id, "details": {"purpose": purpose.code, "segment": None}}
    ]


def test_an_administrator_may_delete_someone_elses_draft(purpose):
    campaign = campaign_make(purpose=purpose)

    drafts.campaign_draft_delete(actor=staff_make(role="administrator"), campaign_id=campaign.pk)

    assert not Campaign.objects.filter(pk=campaign.pk).exists()


@pytest.mark.parametrize("status", ["submitted", "rejected", "approved", "sending"])
def test_deleting_anything_but_a_draft_is_refused_changes_nothing_and_is_audited(purpose, status):
    campaign = campaign_make(purpose=purpose)
    officer = staff_make(role="compliance officer")
    if status != "draft":
        campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    if status == "rejected":
        campaign_reject(actor=officer, campaign_id=campaign.pk, comment="Say which supplies.")
    if status in ("approved", "sending"):
        campaign_approve(actor=officer, campaign_id=campaign.pk)
    if status == "sending":
        authorization_make(patient=patient_make(), purpose=purpose)
        campaign_launch(actor=None, campaign_id=campaign.pk)
    before = Campaign.objects.get(pk=campaign.pk).status

    with pytest.raises(ValidationError, match="Only a draft can be deleted"):
        drafts.campaign_draft_delete(actor=campaign.created_by, campaign_id=campaign.pk)

    assert Campaign.objects.get(pk=campaign.pk).status == before
    assert _events(campaign.pk, "campaign.draft_deleted") == []
    assert _events(campaign.pk, "campaign.draft_action_refused") == [
        {"actor_id": campaign.created_by_id, "details": {"action": "delete", "reason": "status", "status": before}}
    ]


def test_another_marketer_cannot_delete_a_draft(purpose):
    campaign = campaign_make(purpose=purpose)
    other = staff_make()

    with pytest.raises(PermissionDenied):
        drafts.campaign_draft_delete(actor=other, campaign_id=campaign.pk)

    assert Campaign.objects.filter(pk=campaign.pk, status="draft").exists()
    assert _events(campaign.pk, "campaign.draft_action_refused") == [
        {"actor_id": other.pk, "details": {"action": "delete", "reason": "not_author", "status": "draft"}}
    ]


def test_author_withdraws_a_submission_and_it_is_a_draft_again(purpose):
    campaign = campaign_make(purpose=purpose)
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)

    withdrawn = drafts.campaign_withdraw(actor=campaign.created_by, campaign_id=campaign.pk)

    assert withdrawn.status == "draft" and Campaign.objects.get(pk=campaign.pk).status == "draft"
    assert _events(campaign.pk, "campaign.withdrawn") == [
        {"actor_id": campaign.created_by_id, "details": {"from": "submitted", "to": "draft"}}
    ]


def test_an_administrator_may_withdraw_a_submission(purpose):
    campaign = campaign_make(purpose=purpose)
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    administrator = staff_make(role="administrator")

    drafts.campaign_withdraw(actor=administrator, campaign_id=campaign.pk)

    assert Campaign.objects.get(pk=campaign.pk).status == "draft"
    assert _events(campaign.pk, "campaign.withdrawn")[0]["actor_id"] == administrator.pk


@pytest.mark.parametrize("role", ["marketer", "compliance officer"])
def test_only_the_author_or_an_administrator_may_withdraw(purpose, role):
    campaign = campaign_make(purpose=purpose)
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    other = staff_make(role=role)

    with pytest.raises(PermissionDenied):
        drafts.campaign_withdraw(actor=other, campaign_id=campaign.pk)

    assert Campaign.objects.get(pk=campaign.pk).status == "submitted"
    assert _events(campaign.pk, "campaign.withdrawn") == []
    assert _events(campaign.pk, "campaign.draft_action_refused") == [
        {"actor_id": other.pk, "details": {"action": "withdraw", "reason": "not_author", "status": "submitted"}}
    ]


def test_withdrawing_what_is_not_submitted_is_refused(purpose):
    campaign = campaign_make(purpose=purpose)

    with pytest.raises(ValidationError, match="Only a campaign waiting for approval can be withdrawn"):
        drafts.campaign_withdraw(actor=campaign.created_by, campaign_id=campaign.pk)

    assert Campaign.objects.get(pk=campaign.pk).status == "draft"
    assert _events(campaign.pk, "campaign.withdrawn") == []
