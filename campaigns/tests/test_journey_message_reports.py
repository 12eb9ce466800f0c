"""The reports cover journey messages (issue 14, item 7): a journey's send step is a campaign of kind journey_step
whose deliveries are created one by one as enrolments reach the step. The campaign evidence report lists and
reports them as journey messages, the patient history and ledger label them ("Journey message: <journey> · step
N") with the audit event that recorded each outcome, the compliance summary counts them apart from campaign
messages with its totals unchanged, and the results list leaves them out. R-SEND-EVIDENCE, R-SEC-AUDIT.

campaigns tests never import journeys (import-linter): the step campaign is made and opened by
campaigns.services.journey_steps, as the journey service does; its deliveries are created as the journey scanner
creates them (one row per enrolment reaching the step; blocked at once when not covered, with the pass's
journey.steps_run event) and sent by the one sender."""
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit import actions
from audit.models import AuditEvent
from audit.services import audit_record
from campaigns.forms.reports import CampaignEvidenceForm
from campaigns.models import Campaign, Delivery
from campaigns.selectors.campaigns import JOURNEY_PASS_BLOCKED, delivery_history_list, journey_message_of, message_label
from campaigns.selectors.results import campaign_list_filtered, campaign_status_counts
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.services.journey_steps import journey_step_campaign_create, journey_step_campaigns_open
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.test_reports import _export, _officer, _pdf_text, _streamed_text, _table
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

STEP_NAME = "CPAP follow-up · v1 · step 2"  # as the journeys app names a send step's campaign
JOURNEY_ID = 4242  # the journey whose scanner pass the test plays (its audit event's object)


def _step_campaign(purpose, name=STEP_NAME) -> Campaign:
    marketer, officer = staff_make(role="marketer"), staff_make(role="compliance officer")
    with transaction.atomic():
        campaign = journey_step_campaign_create(
            actor=marketer, name=name, purpose=purpose, subject="How is your CPAP?", body_text="Hello from Riverside."
        )
        journey_step_campaigns_open(actor=officer, campaign_ids=[campaign.pk], paused=False, now=timezone.now())
    return Campaign.objects.get(pk=campaign.pk)


def _pass(campaign, *, queued=(), blocked=(), sequence=1, journey_id=JOURNEY_ID) -> list[Delivery]:
    """One journey scanner pass reaching this step: a queued delivery per covered enrolment, a blocked one (with
    its reason) per uncovered one, and the pass's audit event listing the enrolments by outcome and the blocked
    deliveries' ids."""
    with transaction.atomic():
        deliveries = Delivery.objects.bulk_create(
            [Delivery(campaign=campaign, patient=patient, sequence=sequence) for patient in queued]
            + [
                Delivery(campaign=campaign, patient=patient, sequence=sequence, status=Delivery.Status.BLOCKED,
                         block_reason=reason)
                for patient, reason in blocked
            ]
        )
        outcomes: dict[str, list[int]] = {}
        for index, delivery in enumerate(deliveries, start=1):
            key = "queued" if delivery.status == Delivery.Status.QUEUED else (
                "dropped_frequency_cap" if delivery.block_reason == "frequency_cap" else f"blocked_{delivery.block_reason}"
            )
            outcomes.setdefault(key, []).append(900 + index)  # enrolment ids
        blocked_ids = [d.pk for d in deliveries if d.status == Delivery.Status.BLOCKED]
        if blocked_ids:
            outcomes[JOURNEY_PASS_BLOCKED] = blocked_ids
        audit_record(
            actor=None, actor_role=actions.SYSTEM, action=actions.JOURNEY_STEPS_RUN, object_type="journey",
            object_id=journey_id, details=outcomes,
        )
    return deliveries


def _send_all(campaign) -> None:
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass


@pytest.fixture
def journey_world():
    """A marketing purpose; a campaign to every patient (two covered, one who never signed); a journey step whose
    pass queued the two covered patients (sent by the sender) and blocked the one who never signed; a second
    enrolment of the first patient, over the frequency cap."""
    purpose = purpose_make(code="cpap-followup", name="CPAP follow-up")
    covered, other, never = patient_make(external_id="MRN-J1"), patient_make(), patient_make()
    for patient in (covered, other):
        authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose, name="Spring CPAP refill")
    campaign_launch(actor=None, campaign_id=campaign.pk)
    _send_all(campaign)
    campaign_finish_if_done(campaign_id=campaign.pk)
    step = _step_campaign(purpose)
    _pass(step, queued=[covered, other], blocked=[(never, Delivery.BlockReason.NO_AUTHORIZATION)])
    _send_all(step)
    _pass(step, blocked=[(covered, Delivery.BlockReason.FREQUENCY_CAP)], sequence=2)
    return {"purpose": purpose, "campaign": campaign, "step": step, "covered": covered, "other": other,
            "never": never}


# --- the label -------------------------------------------------------------------------------------------------


def test_a_step_campaign_is_labelled_journey_message_with_its_journey_and_step():
    purpose = purpose_make()
    step = _step_campaign(purpose, name="Refill reminder · v3 · step 1")
    odd = _step_campaign(purpose, name="A name the journeys app did not write")
    campaign = campaign_approved_make(purpose=purpose, name="Spring · v2 · step 9")

    journey = journey_message_of(step)
    assert (journey.journey, journey.version, journey.step) == ("Refill reminder", 3, 1)
    assert message_label(step) == "Journey message: Refill reminder · step 1"
    assert message_label(odd) == "Journey message: A name the journeys app did not write"
    assert journey_message_of(campaign) is None and message_label(campaign) == "Spring · v2 · step 9"


# --- patient history (the audit page) ----------------------------------------------------------------------------


def test_r_sec_audit_patient_history_shows_journey_messages_with_the_event_that_recorded_each(journey_world):
    step, covered, never = journey_world["step"], journey_world["covered"], journey_world["never"]

    rows = delivery_history_list(patient_id=covered.pk)
    (blocked_row,) = [row for row in delivery_history_list(patient_id=never.pk) if row.delivery.campaign_id == step.pk]

    by_campaign = {(row.delivery.campaign_id, row.delivery.sequence): row for row in rows}
    sent = by_campaign[(step.pk, 1)]
    capped = by_campaign[(step.pk, 2)]
    campaign_row = by_campaign[(journey_world["campaign"].pk, 0)]
    assert sent.journey_message == capped.journey_message == "Journey message: CPAP follow-up · step 2"
    assert campaign_row.journey_message == ""
    assert sent.delivery.status == "sent" and sent.recorded_by.action == actions.DELIVERY_BATCH_DISPATCHED
    assert sent.delivery.pk in sent.recorded_by.details["sent"]
    # Never launched: a journey message blocked when its step came due is recorded by the journey's pass.
    for row in (capped, blocked_row):
        assert row.recorded_by is not None
        assert (row.recorded_by.action, row.recorded_by.object_type) == (actions.JOURNEY_STEPS_RUN, "journey")
    assert "dropped_frequency_cap" in capped.recorded_by.details
    assert "blocked_no_authorization" in blocked_row.recorded_by.details
    assert not AuditEvent.objects.filter(action=actions.CAMPAIGN_LAUNCHED, object_id=str(step.pk)).exists()
    assert blocked_row.delivery.pk in blocked_row.recorded_by.details[JOURNEY_PASS_BLOCKED]


def test_r_sec_audit_two_journeys_blocking_at_the_same_moment_each_delivery_names_its_own_pass():
    """Two journeys' passes at once, the same outcome (no authorization): each blocked message is tied to the
    event that names its id, not to the latest event with that outcome."""
    purpose = purpose_make()
    first, second = _step_campaign(purpose, name="A · v1 · step 1"), _step_campaign(purpose, name="B · v1 · step 1")
    patient_a, patient_b = patient_make(), patient_make()
    (delivery_a,) = _pass(first, blocked=[(patient_a, Delivery.BlockReason.NO_AUTHORIZATION)], journey_id=1)
    (delivery_b,) = _pass(second, blocked=[(patient_b, Delivery.BlockReason.NO_AUTHORIZATION)], journey_id=2)

    (row_a,) = delivery_history_list(patient_id=patient_a.pk)
    (row_b,) = delivery_history_list(patient_id=patient_b.pk)

    assert row_a.recorded_by.object_id == "1" and row_b.recorded_by.object_id == "2"
    assert row_a.recorded_by.details[JOURNEY_PASS_BLOCKED] == [delivery_a.pk]
    assert row_b.recorded_by.details[JOURNEY_PASS_BLOCKED] == [delivery_b.pk]


def test_the_patient_history_page_labels_journey_messages(verified_client, journey_world):
    verified_client.sign_in(role="compliance officer")

    html = verified_client.get(f"/audit/patients/{journey_world['covered'].pk}/").content.decode()

    assert html.count("Journey message: CPAP follow-up · step 2") == 2
    assert "enrolment 2" in html
    assert f'href="/campaigns/{journey_world["step"].pk}/"' not in html  # a step is run by its journey, not here
    assert "no event found" not in html


# --- patient ledger ----------------------------------------------------------------------------------------------


def test_r_send_evidence_patient_ledger_lists_journey_messages_as_such(verified_client, journey_world):
    officer = _officer(verified_client)

    response = _export(verified_client, officer, "patient-ledger", fmt="csv", patient=journey_world["covered"].pk)

    _, rows = _table(_streamed_text(response))
    messages = [row for row in rows if row["event"].startswith("message_")]
    assert [(row["message_kind"], row["journey_message"], row["event"]) for row in messages] == [
        ("campaign", "", "message_sent"),
        ("journey_step", "Journey message: CPAP follow-up · step 2", "message_sent"),
        ("journey_step", "Journey message: CPAP follow-up · step 2", "message_blocked"),
    ]
    assert messages[2]["block_reason"] == "frequency_cap"


def test_patient_ledger_pdf_renders_journey_messages(verified_client, journey_world):
    officer = _officer(verified_client)

    response = _export(verified_client, officer, "patient-ledger", fmt="pdf", patient=journey_world["covered"].pk)

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"


# --- campaign evidence -------------------------------------------------------------------------------------------


def test_the_evidence_form_lists_journey_messages_labelled_as_such(journey_world):
    form = CampaignEvidenceForm(prefix="evidence")

    labels = [label for value, label in form.fields["campaign"].choices if value]

    step, campaign = journey_world["step"], journey_world["campaign"]
    assert f"#{step.pk} · Journey message: CPAP follow-up · step 2 (version 1, sending)" in labels
    assert f"#{campaign.pk} · Spring CPAP refill (sent)" in labels


def test_r_send_evidence_journey_message_csv_has_every_delivery_with_its_enrolment_and_time(
    verified_client, journey_world
):
    officer = _officer(verified_client)
    step = journey_world["step"]

    response = _export(verified_client, officer, "campaign-evidence", fmt="csv", campaign=step.pk)

    assert response.status_code == 200
    preamble, rows = _table(_streamed_text(response))
    assert (preamble["message_kind"], preamble["journey_message"], preamble["journey"]) == (
        "journey_step", "Journey message: CPAP follow-up · step 2", "CPAP follow-up"
    )
    assert (preamble["journey_version"], preamble["journey_step"]) == ("1", "2")
    assert preamble["launched_at"]  # opened for deliveries with its version's approval
    outcomes = sorted((row["patient_id"], row["sequence"], row["outcome"], row["block_reason"]) for row in rows)
    covered, other, never = (str(journey_world[name].pk) for name in ("covered", "other", "never"))
    assert outcomes == sorted([
        (covered, "1", "sent", ""), (other, "1", "sent", ""), (never, "1", "blocked", "no_authorization"),
        (covered, "2", "blocked", "frequency_cap"),
    ])
    assert all(row["created_at"] for row in rows)
    assert all(row["covered_at_send"] == "True" for row in rows if row["outcome"] == "sent")
    assert (preamble["total: audience"], preamble["total: sent"], preamble["total: blocked"]) == ("4", "2", "2")
    assert preamble["total: sent_without_covering_authorization"] == "0"


def test_a_campaigns_evidence_csv_says_it_is_a_campaign(verified_client, journey_world):
    officer = _officer(verified_client)

    response = _export(verified_client, officer, "campaign-evidence", fmt="csv", campaign=journey_world["campaign"].pk)

    preamble, rows = _table(_streamed_text(response))
    assert preamble["message_kind"] == "campaign" and "journey" not in preamble
    assert [row["sequence"] for row in rows] == ["0", "0", "0"]


def test_journey_message_evidence_pdf_renders(verified_client, journey_world, tmp_path):
    officer = _officer(verified_client)

    response = _export(verified_client, officer, "campaign-evidence", fmt="pdf", campaign=journey_world["step"].pk)

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = _pdf_text(response.content, tmp_path)
    assert "Journey message: CPAP follow-up · step 2" in text
    assert "Opened for deliveries" in text and "Messages prepared" in text


# --- compliance summary ------------------------------------------------------------------------------------------


def _summary(verified_client, officer) -> dict:
    today = timezone.localdate()
    period = {"date_from": (today - timedelta(days=1)).isoformat(), "date_to": today.isoformat()}
    response = _export(verified_client, officer, "compliance-summary", fmt="csv", **period)
    _, rows = _table(_streamed_text(response))
    return {(row["measure"], row["breakdown"]): int(float(row["value"])) for row in rows if row["section"] == "sends"}


def test_compliance_summary_counts_journey_messages_apart_and_its_totals_stay_right(verified_client, journey_world):
    officer = _officer(verified_client)

    lines = _summary(verified_client, officer)

    assert lines[("campaigns launched", "")] == 1  # the step campaign opened, it was not launched
    assert lines[("messages sent", "")] == 4
    assert (lines[("campaign messages sent", "")], lines[("journey messages sent", "")]) == (2, 2)
    assert lines[("sends blocked", "")] == 3
    assert lines[("sends blocked by reason", "no_authorization")] == 2
    assert lines[("sends blocked by reason", "frequency_cap")] == 1
    assert (lines[("campaign messages blocked", "")], lines[("journey messages blocked", "")]) == (1, 2)
    assert lines[("campaign messages blocked by reason", "no_authorization")] == 1
    assert lines[("journey messages blocked by reason", "no_authorization")] == 1
    assert lines[("journey messages blocked by reason", "frequency_cap")] == 1
    assert ("campaign messages blocked by reason", "frequency_cap") not in lines


def test_compliance_summary_pdf_has_the_split_by_kind(verified_client, journey_world, tmp_path):
    officer = _officer(verified_client)
    today = timezone.localdate().isoformat()

    response = _export(verified_client, officer, "compliance-summary", fmt="pdf", date_from=today, date_to=today)

    assert response.status_code == 200
    text = _pdf_text(response.content, tmp_path)
    sends = text[text.find("By kind of message"):]
    assert "Campaign messages" in sends and "Journey messages" in sends and "All messages" in sends


# --- the results list --------------------------------------------------------------------------------------------


def test_the_results_list_leaves_journey_step_campaigns_out(journey_world):
    listed = list(campaign_list_filtered())
    sending = list(campaign_list_filtered(status=Campaign.Status.SENDING))

    assert journey_world["step"] not in listed and journey_world["campaign"] in listed
    assert sending == []
    assert campaign_status_counts() == {"sent": 1}
