"""The audit log for people (issue 17, item 4): every action of the vocabulary reads as a sentence, names come from
the objects the viewer may see (hipaamail/tests/test_audit_log_names.py, since this app imports no other), the filters speak in plain words, and "verify the chain now"
runs the verification for compliance officers and administrators only (R-SEC-AUDIT, R-SEC-INTEGRITY,
R-MIN-NECESSARY)."""
import re
import string
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail

from audit import actions, chain, sentences
from audit.models import AuditEvent
from audit.services import audit_record, audit_seal

pytestmark = pytest.mark.django_db

PHRASES = {"actor", "object", "patient", "purpose", "channel", "version"}


def _bare_event(action, **fields):
    """An unsaved event with nothing but its action: the least a sentence can be made from."""
    values = {"action": action, "actor_id": None, "actor": None, "actor_role": actions.SYSTEM, "object_type": "",
              "object_id": "", "patient_id": None, "details": {}}
    values.update(fields)
    return SimpleNamespace(**values)


def test_every_action_of_the_vocabulary_has_a_sentence_and_a_kind():
    assert set(sentences.SENTENCES) == set(actions.ACTIONS), "an action without a sentence (or a sentence left over)"
    assert [action for action in sorted(actions.ACTIONS) if not sentences.kind_of(action)] == []


def test_every_break_reason_has_the_same_meaning_in_the_pages_as_on_the_command_line():
    # audit.chain keeps them in English for the standalone verifier; audit.sentences says them in the reader's language.
    assert {reason: str(meaning) for reason, meaning in sentences.BREAK_MEANINGS.items()} == chain.DESCRIPTIONS
    assert sentences.break_meaning("no_such_reason") == "no_such_reason"


@pytest.mark.parametrize("action", sorted(actions.ACTIONS))
def test_each_sentence_reads_without_codes_from_an_event_with_no_details(action):
    label, template = (str(part) for part in sentences.SENTENCES[action])
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    assert used <= PHRASES, f"{action}: unknown phrase {used - PHRASES}"

    text = sentences.event_sentence(_bare_event(action))

    assert text[0].isupper() and text.endswith(".")
    assert "{" not in text and "_" not in text and action not in text
    assert label and "_" not in label and "." not in label


# --- Filters in plain words --------------------------------------------------------------------------------


@pytest.fixture
def officer(verified_client):
    verified_client.sign_in(role="compliance officer")
    return verified_client


def _shown(response) -> list[str]:
    return re.findall(r'<li class="event" data-action="([^"]+)"', response.content.decode())


def test_the_role_filter_keeps_the_events_of_that_role(officer):
    marketer = get_user_model().objects.create_user(username="m", email="m@riverside-health.example")
    marketer.groups.add(Group.objects.get_or_create(name="marketer")[0])
    audit_record(actor=marketer, action=actions.CAMPAIGN_UPDATED, object_type="campaign", object_id=1)
    audit_record(actor=None, actor_role=actions.PATIENT, action=actions.PATIENT_EMAIL_PROVEN, patient_id=3)
    audit_record(actor=None, action=actions.CAMPAIGN_SENT, object_type="campaign", object_id=1)

    assert _shown(officer.get("/audit/?role=marketer")) == [actions.CAMPAIGN_UPDATED]
    assert _shown(officer.get("/audit/?role=patient")) == [actions.PATIENT_EMAIL_PROVEN]
    assert _shown(officer.get("/audit/?role=system")) == [actions.CAMPAIGN_SENT]


def test_the_kind_filter_keeps_every_action_of_that_kind(officer):
    audit_record(actor=None, action=actions.CAMPAIGN_SENT, object_type="campaign", object_id=1)
    audit_record(actor=None, action=actions.SEGMENT_SAVED, object_type="segment", object_id=1)
    audit_record(actor=None, action=actions.JOURNEY_PAUSED, object_type="journey", object_id=1)

    assert _shown(officer.get("/audit/?kind=campaigns")) == [actions.SEGMENT_SAVED, actions.CAMPAIGN_SENT]
    assert _shown(officer.get("/audit/?kind=journeys")) == [actions.JOURNEY_PAUSED]


def test_the_object_filter_keeps_the_events_about_that_object(officer):
    audit_record(actor=None, action=actions.JOURNEY_PAUSED, object_type="journey", object_id=4)
    audit_record(actor=None, action=actions.JOURNEY_RESUMED, object_type="journey", object_id=5)
    audit_record(actor=None, action=actions.CAMPAIGN_SENT, object_type="campaign", object_id=4)

    assert _shown(officer.get("/audit/?object_type=journey&object_id=4")) == [actions.JOURNEY_PAUSED]
    assert _shown(officer.get("/audit/?object_type=journey")) == [actions.JOURNEY_RESUMED, actions.JOURNEY_PAUSED]


def test_the_filters_offer_plain_words_not_codes(officer):
    audit_record(actor=None, action=actions.CAMPAIGN_SENT, object_type="campaign", object_id=1)

    page = officer.get("/audit/").content.decode()

    assert '<option value="campaign.sent">Campaign finished sending</option>' in page
    assert '<option value="campaigns">Campaigns and segments</option>' in page
    assert '<option value="campaign">Campaign</option>' in page
    assert '<option value="compliance">Compliance officer</option>' in page


def test_an_unknown_kind_or_role_is_explained_not_applied(officer):
    audit_record(actor=None, action=actions.CAMPAIGN_SENT, object_type="campaign", object_id=1)

    response = officer.get("/audit/?kind=nonsense&role=nobody")

    assert response.status_code == 200
    assert "Select a valid choice." in response.content.decode()
    assert _shown(response) == [actions.CAMPAIGN_SENT]


# --- Verify the chain now ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["compliance officer", "administrator"])
def test_r_sec_integrity_verify_now_walks_the_chain_and_says_it_is_intact(verified_client, role):
    for n in range(3):
        audit_record(actor=None, action=actions.CAMPAIGN_SENT, object_type="campaign", object_id=n + 1)
    audit_seal()
    user = verified_client.sign_in(role=role)

    response = verified_client.post("/audit/verify/", follow=True)

    verified = AuditEvent.objects.get(action=actions.AUDIT_VERIFIED)
    assert (verified.actor_id, verified.details["ok"], verified.details["events"]) == (user.pk, True, 3)
    page = response.content.decode()
    assert "The audit chain is intact: 3 entries checked in" in page
    assert "verified the audit chain." in page
    assert mail.outbox == []


def test_r_min_necessary_a_marketer_cannot_verify_the_chain(verified_client):
    audit_record(actor=None, action=actions.CAMPAIGN_SENT, object_type="campaign", object_id=1)
    verified_client.sign_in(role="marketer")

    response = verified_client.post("/audit/verify/")

    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action__startswith="audit.").exists()
    assert AuditEvent.objects.filter(sequence__isnull=False).count() == 0  # not even sealed by it


def test_verify_now_is_a_post_only(officer):
    assert officer.get("/audit/verify/").status_code == 405
    assert not AuditEvent.objects.filter(action=actions.AUDIT_VERIFIED).exists()
