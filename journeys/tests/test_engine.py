"""The journey engine in process: events enrol once, steps run at their times, the invariant per step
(R-SEND-COVERED, R-REVOKE-ANYTIME, R-SEND-EVIDENCE), fatigue and timing (issue 14)."""
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from audit import actions
from audit.models import AuditEvent
from campaigns.models import Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from consent.services.authorizations import authorization_revoke
from consent.services.events import patient_event_record
from consent.tests.factories import authorization_make, patient_make
from journeys.engine.intake import events_route
from journeys.engine.steps import journey_steps_advance
from journeys.models import Enrolment, ExitReason, StepOutcome, StepRun
from journeys.tests.factories import event_trigger, journey_live_make, journey_purpose_make

pytestmark = pytest.mark.django_db

OCCURRED = timezone.now() - timedelta(minutes=1)

@pytest.fixture
def fast(settings):
    """A journey minute lasts a millisecond; quiet hours off unless a test sets them."""
    settings.HIPAAMAIL_JOURNEY_MINUTE_SECONDS = 0.001
    settings.HIPAAMAIL_QUIET_HOURS = ""
    return settings


def _event(patient, *, event_id, type="equipment.delivered", **attributes):
    return patient_event_record(
        source="ehr",
        source_event_id=event_id,
        patient_id=patient.pk,
        type=type,
        occurred_at=OCCURRED,
        attributes=attributes or {"equipment_type": "CPAP"},
    )[0]


def _run_until_quiet(rounds=20):
    """Route events and run due steps until nothing is due; send what was queued."""
    for _ in range(rounds):
        events_route()
        taken, campaigns = journey_steps_advance()
        for campaign_id in campaigns:
            while delivery_dispatch_batch(campaign_id=campaign_id):
                pass
        if not taken and not Enrolment.objects.filter(status="active", due_at__lte=timezone.now()).exists():
            return


def _wait_past(enrolment_id):
    due = Enrolment.objects.get(pk=enrolment_id).due_at
    while timezone.now() <= due:
        pass


def test_event_enrols_and_steps_send_through_the_one_sender(fast):
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patient = patient_make()
    authorization = authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="delivery-1")

    _run_until_quiet()
    enrolment = Enrolment.objects.get(journey=journey)
    _wait_past(enrolment.pk)
    _run_until_quiet()

    deliveries = list(Delivery.objects.filter(patient=patient).order_by("id"))
    assert [d.status for d in deliveries] == ["sent", "sent"]
    assert {d.authorization_id for d in deliveries} == {authorization.pk}
    enrolment.refresh_from_db()
    assert (enrolment.status, enrolment.exit_reason) == ("ended", ExitReason.COMPLETED)
    outcomes = list(StepRun.objects.filter(enrolment=enrolment).order_by("id").values_list("outcome", flat=True))
    assert outcomes == [StepOutcome.QUEUED, StepOutcome.WAITED, StepOutcome.QUEUED, StepOutcome.EXITED]


def test_the_same_event_delivered_twice_enrols_once(fast):
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="same")
    _event(patient, event_id="same")  # the sender retried: stored once (consent.services.events)
    _event(patient, event_id="other")  # another event while the first enrolment runs

    _run_until_quiet()

    assert Enrolment.objects.filter(journey=journey).count() == 1
    assert AuditEvent.objects.filter(action=actions.JOURNEY_ENROLLED, object_id=str(journey.pk)).count() == 1


def test_r_revoke_anytime_revocation_ends_the_enrolment_at_its_commit(fast):
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="e1")
    _run_until_quiet()
    enrolment = Enrolment.objects.get(journey=journey)
    assert enrolment.status == "active"  # waiting between the two messages

    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")

    enrolment.refresh_from_db()
    assert (enrolment.status, enrolment.exit_reason) == ("ended", ExitReason.REVOKED)
    _wait_past(enrolment.pk)
    _run_until_quiet()
    assert Delivery.objects.filter(patient=patient).count() == 1  # the second step never came


def test_r_send_covered_a_revocation_after_the_step_queued_blocks_its_message(fast):
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="e1")
    events_route()
    journey_steps_advance()  # the first message is queued, not yet sent
    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")

    delivery = Delivery.objects.get(patient=patient)
    while delivery_dispatch_batch(campaign_id=delivery.campaign_id):
        pass

    delivery.refresh_from_db()
    assert (delivery.status, delivery.block_reason) == ("blocked", "revoked")
    assert Enrolment.objects.get(journey=journey).exit_reason == ExitReason.REVOKED


def test_r_send_evidence_an_uncovered_patient_is_not_sent_the_step_and_the_step_says_why(fast):
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patient = patient_make()  # no authorization
    _event(patient, event_id="e1")

    _run_until_quiet()

    delivery = Delivery.objects.get(patient=patient)
    assert (delivery.status, delivery.block_reason) == ("blocked", "no_authorization")
    run = StepRun.objects.get(enrolment__journey=journey, outcome=StepOutcome.BLOCKED)
    assert (run.reason, run.delivery_id) == ("no_authorization", delivery.pk)
    assert Enrolment.objects.get(journey=journey).exit_reason == ExitReason.NOT_COVERED


def test_quiet_hours_hold_a_message_to_the_patients_morning(fast, monkeypatch):
    fast.HIPAAMAIL_QUIET_HOURS = "21:00-08:00"
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patient = patient_make(time_zone="America/New_York")
    authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="e1")
    late = datetime(2026, 12, 4, 3, 30, tzinfo=UTC)  # 22:30 in New York
    monkeypatch.setattr("journeys.engine.steps.timezone.now", lambda: late)

    events_route()
    journey_steps_advance()

    enrolment = Enrolment.objects.get(journey=journey)
    assert enrolment.due_at == datetime(2026, 12, 4, 13, 0, tzinfo=UTC)  # 08:00 in New York
    assert enrolment.held_reason == "quiet_hours"
    assert StepRun.objects.get(enrolment=enrolment).outcome == StepOutcome.HELD
    assert not Delivery.objects.filter(patient=patient).exists()


def test_frequency_cap_drops_a_marketing_message_and_records_why(fast):
    fast.HIPAAMAIL_FREQUENCY_CAP = 1
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="e1")

    _run_until_quiet()
    _wait_past(Enrolment.objects.get(journey=journey).pk)
    _run_until_quiet()

    statuses = list(Delivery.objects.filter(patient=patient).order_by("id").values_list("status", "block_reason"))
    assert statuses == [("sent", ""), ("blocked", "frequency_cap")]
    assert StepRun.objects.filter(outcome=StepOutcome.DROPPED, reason="frequency_cap").count() == 1


def test_treatment_messages_are_not_capped(fast):
    fast.HIPAAMAIL_FREQUENCY_CAP = 1
    purpose = journey_purpose_make(kind="treatment")
    journey = journey_live_make(purpose=purpose)
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="e1")

    _run_until_quiet()
    _wait_past(Enrolment.objects.get(journey=journey).pk)
    _run_until_quiet()

    assert list(Delivery.objects.filter(patient=patient).values_list("status", flat=True)) == ["sent", "sent"]


def test_conditions_pick_the_events_that_enrol(fast):
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose, trigger=event_trigger(conditions={"equipment_type": "CPAP"}))
    cpap, wheelchair = patient_make(), patient_make()
    _event(cpap, event_id="a", equipment_type="CPAP")
    _event(wheelchair, event_id="b", equipment_type="WHEELCHAIR-MANUAL")

    events_route()

    assert list(Enrolment.objects.filter(journey=journey).values_list("patient_id", flat=True)) == [cpap.pk]
