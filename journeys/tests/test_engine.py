"""The journey engine in process: events enrol once, steps run at their times, the invariant per step
(R-SEND-COVERED, R-REVOKE-ANYTIME, R-SEND-EVIDENCE), fatigue and timing (issue 14)."""
from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from audit import actions
from audit.models import AuditEvent
from campaigns.models import Delivery
from campaigns.selectors.campaigns import JOURNEY_PASS_BLOCKED, delivery_history_list
from campaigns.sending.dispatch import delivery_dispatch_batch
from consent.services.authorizations import authorization_revoke
from consent.services.events import patient_event_record
from consent.tests.factories import authorization_make, patient_make
from journeys.engine.intake import events_route
from journeys.engine.steps import journey_steps_advance
from journeys.models import Enrolment, ExitReason, StepKind, StepOutcome, StepRun
from journeys.services.journeys import StepSpec
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
    # R-SEC-AUDIT: the pass's event names the blocked delivery; the patient history finds it by that id.
    (row,) = delivery_history_list(patient_id=patient.pk)
    assert (row.recorded_by.action, row.recorded_by.object_id) == (actions.JOURNEY_STEPS_RUN, str(journey.pk))
    assert row.recorded_by.details[JOURNEY_PASS_BLOCKED] == [delivery.pk]


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
    capped = Delivery.objects.get(patient=patient, status="blocked")
    (event,) = AuditEvent.objects.filter(action=actions.JOURNEY_STEPS_RUN, details__has_key="dropped_frequency_cap")
    assert event.details[JOURNEY_PASS_BLOCKED] == [capped.pk]


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


BRANCHING = [
    StepSpec(kind=StepKind.SEND, subject="Book your check-up", body_text="Hello {{ first_name }}."),
    StepSpec(kind=StepKind.BRANCH, branch_event_type="appointment.booked", wait_minutes=5000, yes_position=4),
    StepSpec(kind=StepKind.SEND, subject="A reminder to book", body_text="Still time to book."),
    StepSpec(kind=StepKind.EXIT),
]


def test_a_branch_takes_the_yes_way_as_soon_as_its_event_arrives_and_the_no_way_at_its_deadline(fast):
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose, steps=BRANCHING)
    booked, silent = patient_make(), patient_make()
    for patient in (booked, silent):
        authorization_make(patient=patient, purpose=purpose)
        _event(patient, event_id=f"d-{patient.pk}")
    _run_until_quiet()
    # When one patient books, long before the branch's deadline (5000 "minutes", 5 s here)
    patient_event_record(
        source="ehr", source_event_id="booked", patient_id=booked.pk, type="appointment.booked",
        occurred_at=timezone.now(), attributes={},
    )  # fmt: skip
    _run_until_quiet()

    yes = Enrolment.objects.get(journey=journey, patient=booked)
    assert (yes.status, yes.exit_reason) == ("ended", ExitReason.EXIT_STEP)
    assert Enrolment.objects.get(journey=journey, patient=silent).status == "active"
    _wait_past(Enrolment.objects.get(journey=journey, patient=silent).pk)
    _run_until_quiet()

    assert Delivery.objects.filter(patient=booked).count() == 1
    assert Delivery.objects.filter(patient=silent).count() == 2  # the reminder on the "no" way
    outcomes = set(StepRun.objects.filter(enrolment__journey=journey).values_list("outcome", flat=True))
    assert {StepOutcome.BRANCH_YES, StepOutcome.BRANCH_NO} <= outcomes


def test_a_control_group_gets_nothing_and_converts_like_the_others(fast, monkeypatch):
    purpose = journey_purpose_make()
    trigger = event_trigger(conversion_event_type="appointment.booked", conversion_days=30, holdout_percent=50)
    journey = journey_live_make(purpose=purpose, trigger=trigger)
    patients = [patient_make() for _ in range(20)]
    for patient in patients:
        authorization_make(patient=patient, purpose=purpose)
        _event(patient, event_id=f"d-{patient.pk}")

    events_route()
    journey_steps_advance()
    for patient in patients:
        patient_event_record(
            source="ehr", source_event_id=f"b-{patient.pk}", patient_id=patient.pk, type="appointment.booked",
            occurred_at=timezone.now(), attributes={},
        )  # fmt: skip
    events_route()

    control = Enrolment.objects.filter(journey=journey, control=True)
    treated = Enrolment.objects.filter(journey=journey, control=False)
    assert 0 < control.count() < 20  # about half, chosen by a hash
    assert not Delivery.objects.filter(patient__in=control.values("patient")).exists()
    assert Delivery.objects.filter(patient__in=treated.values("patient")).count() == treated.count()
    # Everyone booked: both groups converted, and the running enrolments ended as converted.
    assert set(Enrolment.objects.filter(journey=journey).values_list("exit_reason", flat=True)) == {"converted"}
    assert Enrolment.objects.filter(journey=journey, converted_at__isnull=True).count() == 0


def test_re_entry_never_enrols_a_patient_a_second_time(fast):
    purpose = journey_purpose_make()
    steps = [StepSpec(kind=StepKind.SEND, subject="Once", body_text="Hello.")]
    journey = journey_live_make(purpose=purpose, steps=steps, trigger=event_trigger(reentry="never"))
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="first")
    _run_until_quiet()
    _event(patient, event_id="second")
    _run_until_quiet()

    assert Enrolment.objects.filter(journey=journey).count() == 1


def test_re_entry_after_exit_enrols_again_with_the_next_sequence(fast):
    purpose = journey_purpose_make()
    steps = [StepSpec(kind=StepKind.SEND, subject="Each time", body_text="Hello.")]
    journey = journey_live_make(purpose=purpose, steps=steps)
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="first")
    _run_until_quiet()
    _event(patient, event_id="second")
    _run_until_quiet()

    assert list(Enrolment.objects.filter(journey=journey).order_by("sequence").values_list("sequence", "status")) == [
        (1, "ended"),
        (2, "ended"),
    ]
    assert list(Delivery.objects.filter(patient=patient).order_by("sequence").values_list("sequence", "status")) == [
        (1, "sent"),
        (2, "sent"),
    ]


def test_an_event_older_than_a_week_enrols_nobody(fast):
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patient = patient_make()
    patient_event_record(
        source="ehr", source_event_id="old", patient_id=patient.pk, type="equipment.delivered",
        occurred_at=timezone.now() - timedelta(days=8), attributes={"equipment_type": "CPAP"},
    )  # fmt: skip

    assert events_route()[0] == 1
    assert not Enrolment.objects.filter(journey=journey).exists()


def test_a_wait_until_a_local_time_ends_at_that_time_in_the_patients_zone(fast, monkeypatch):
    purpose = journey_purpose_make()
    steps = [
        StepSpec(kind=StepKind.WAIT, wait_minutes=0, until_local_time=time(10, 0)),
        StepSpec(kind=StepKind.SEND, subject="Good morning", body_text="Hello."),
    ]
    journey = journey_live_make(purpose=purpose, steps=steps)
    patient = patient_make(time_zone="America/Los_Angeles")
    authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="e1")
    at = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)  # 12:00 in Los Angeles: 10:00 has passed today
    monkeypatch.setattr("journeys.engine.steps.timezone.now", lambda: at)

    events_route()
    journey_steps_advance()

    assert Enrolment.objects.get(journey=journey).due_at == datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def _values(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _values(value)
    elif isinstance(node, list):
        for value in node:
            yield from _values(value)
    else:
        yield node


def test_r_no_phi_leak_journey_audit_events_hold_ids_and_codes_only(fast):
    """R-NO-PHI-LEAK, R-SEC-AUDIT: enrolments, steps, exits and revocation exits are on the audit trail, with
    enrolment ids, counts and codes; never a name, an address or an event's attributes."""
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patient = patient_make(email="rosa.diaz@example.org", full_name="Rosa Diaz")
    authorization_make(patient=patient, purpose=purpose)
    _event(patient, event_id="e1")
    _run_until_quiet()
    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")

    events = AuditEvent.objects.filter(object_type="journey", object_id=str(journey.pk))
    assert {e.action for e in events} >= {
        actions.JOURNEY_CREATED,
        actions.JOURNEY_SUBMITTED,
        actions.JOURNEY_APPROVED,
        actions.JOURNEY_ENROLLED,
        actions.JOURNEY_STEPS_RUN,
        actions.JOURNEY_ENROLMENTS_EXITED,
    }
    enrolment = Enrolment.objects.get(journey=journey)
    assert events.get(action=actions.JOURNEY_ENROLLED).details == {
        "version": 1, "trigger": "event", "enrolments": [enrolment.pk], "held_out": []
    }  # fmt: skip
    for event in events:
        for value in _values(event.details):
            assert isinstance(value, (int, type(None))) or (
                isinstance(value, str) and "@" not in value and "Rosa" not in value and "CPAP" not in value
            ), (event.action, value)


def test_r_purpose_kind_a_treatment_journey_needs_a_stored_consent_like_its_campaigns(fast):
    """R-PURPOSE-KIND (policy): a refill or visit reminder still needs a stored consent to be emailed, and honours
    opt-out, through the same predicate."""
    purpose = journey_purpose_make(kind="treatment")
    journey = journey_live_make(purpose=purpose)
    consenting, never_asked = patient_make(), patient_make()
    authorization_make(patient=consenting, purpose=purpose)
    for patient in (consenting, never_asked):
        _event(patient, event_id=f"d-{patient.pk}")

    _run_until_quiet()

    outcome = dict(Delivery.objects.filter(campaign__journey_step__version__journey=journey).values_list("patient_id", "status"))
    assert outcome == {consenting.pk: "sent", never_asked.pk: "blocked"}
    assert Delivery.objects.get(patient=never_asked).block_reason == "no_authorization"
