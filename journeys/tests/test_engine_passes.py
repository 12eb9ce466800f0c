"""The scanner's set-based writes (journeys.engine.steps on PostgreSQL: COPY of deliveries, step records and
enrolment state; the pass's coverage asked with one array): one pass over several patients keeps every row
with its own patient and gives each blocked one its own reason (issue 14)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Delivery
from consent.services.events import patient_event_record
from consent.services.suppressions import suppression_record
from consent.tests.factories import authorization_make, patient_make
from journeys.engine.intake import events_route
from journeys.engine.steps import journey_steps_advance
from journeys.models import Enrolment, ExitReason, StepOutcome, StepRun
from journeys.tests.factories import journey_live_make, journey_purpose_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def fast(settings):
    settings.HIPAAMAIL_JOURNEY_MINUTE_SECONDS = 0.001
    settings.HIPAAMAIL_QUIET_HOURS = ""
    return settings


def _enrol(patients):
    occurred = timezone.now() - timedelta(minutes=1)
    for n, patient in enumerate(patients):
        patient_event_record(
            source="ehr",
            source_event_id=f"pass-{n}",
            patient_id=patient.pk,
            type="equipment.delivered",
            occurred_at=occurred,
            attributes={"equipment_type": "CPAP"},
        )
    while events_route()[0]:
        pass


def test_one_pass_queues_the_covered_and_blocks_the_uncovered_and_the_suppressed_each_with_its_reason(fast):
    # given a journey whose first step is a send, and patients covered, uncovered and covered but suppressed
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    covered = [patient_make() for _ in range(3)]
    uncovered = patient_make()
    suppressed = patient_make()
    for patient in [*covered, suppressed]:
        authorization_make(patient=patient, purpose=purpose)
    suppression_record(actor=None, email=suppressed.email, reason="complaint")
    everyone = [covered[0], uncovered, covered[1], suppressed, covered[2]]
    _enrol(everyone)

    # when one scanner pass takes them all
    taken, campaigns = journey_steps_advance()

    # then each got its own delivery, queued or blocked with its reason, in the order of the pass
    assert taken == 5
    deliveries = {d.patient_id: d for d in Delivery.objects.filter(patient__in=everyone)}
    assert {pid: (d.status, d.block_reason) for pid, d in deliveries.items()} == {
        **{p.pk: ("queued", "") for p in covered},
        uncovered.pk: ("blocked", "no_authorization"),
        suppressed.pk: ("blocked", "suppressed"),
    }
    assert campaigns == {deliveries[covered[0].pk].campaign_id}
    assert all(d.sequence == 1 and d.attempts == 0 and not d.possible_duplicate for d in deliveries.values())
    enrolments = {e.patient_id: e for e in Enrolment.objects.filter(journey=journey)}
    # and each step record names its own patient's delivery
    runs = list(StepRun.objects.filter(enrolment__journey=journey).select_related("enrolment").order_by("id"))
    for run in runs:
        if run.delivery_id is not None:
            assert run.delivery_id == deliveries[run.enrolment.patient_id].pk
    by_patient = {}
    for run in runs:
        by_patient.setdefault(run.enrolment.patient_id, []).append((run.outcome, run.reason))
    assert by_patient[uncovered.pk] == [
        (StepOutcome.BLOCKED, "no_authorization"),
        (StepOutcome.EXITED, ExitReason.NOT_COVERED),
    ]
    assert by_patient[suppressed.pk] == [
        (StepOutcome.BLOCKED, "suppressed"),
        (StepOutcome.EXITED, ExitReason.NOT_COVERED),
    ]
    assert all(by_patient[p.pk] == [(StepOutcome.QUEUED, "")] for p in covered)
    # and the enrolments moved on: the covered wait at step 2, the others ended
    assert {pid: (e.status, e.step_position, e.exit_reason) for pid, e in enrolments.items()} == {
        **{p.pk: ("active", 2, "") for p in covered},
        uncovered.pk: ("ended", 1, ExitReason.NOT_COVERED),
        suppressed.pk: ("ended", 1, ExitReason.NOT_COVERED),
    }
    assert all(enrolments[p.pk].step_started_at is not None for p in covered)
    assert journey_steps_advance() == (0, set())


def test_two_passes_in_one_transaction_write_each_enrolment_once(fast):
    # given two patients enrolled, taken by two passes of one each inside the test's transaction
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patients = [patient_make(), patient_make()]
    for patient in patients:
        authorization_make(patient=patient, purpose=purpose)
    _enrol(patients)

    # when
    assert journey_steps_advance(batch_size=1)[0] == 1
    assert journey_steps_advance(batch_size=1)[0] == 1

    # then
    assert Delivery.objects.filter(patient__in=patients, status="queued").count() == 2
    assert StepRun.objects.filter(enrolment__journey=journey, outcome=StepOutcome.QUEUED).count() == 2
    assert set(Enrolment.objects.filter(journey=journey).values_list("step_position", flat=True)) == {2}
