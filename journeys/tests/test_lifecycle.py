"""A journey's life (issue 14 item 3): maker-checker, versions that running enrolments finish on, pause, resume and
stop, each audited; validation that names the step."""
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit import actions
from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from consent.services.events import patient_event_record
from consent.tests.factories import authorization_make, patient_make
from journeys.engine.intake import events_route
from journeys.engine.steps import journey_steps_advance
from journeys.models import Enrolment, ExitReason, Journey, JourneyVersion, StepKind
from journeys.services.journeys import (
    StepSpec,
    journey_approve,
    journey_pause,
    journey_reject,
    journey_resume,
    journey_stop,
    journey_submit,
    journey_version_save,
)
from journeys.tests.factories import (
    FOLLOW_UP,
    event_trigger,
    journey_draft_make,
    journey_live_make,
    journey_purpose_make,
)

pytestmark = pytest.mark.django_db

OCCURRED = timezone.now() - timedelta(minutes=1)


@pytest.fixture(autouse=True)
def fast(settings):
    settings.HIPAAMAIL_JOURNEY_MINUTE_SECONDS = 0.001
    settings.HIPAAMAIL_QUIET_HOURS = ""


def _enrol(patient, event_id):
    patient_event_record(
        source="ehr", source_event_id=event_id, patient_id=patient.pk, type="equipment.delivered",
        occurred_at=OCCURRED, attributes={"equipment_type": "CPAP"},
    )  # fmt: skip
    events_route()


def _audited(journey, action):
    return AuditEvent.objects.filter(action=action, object_type="journey", object_id=str(journey.pk)).count()


def test_the_author_cannot_approve_their_own_journey_and_the_refusal_is_audited():
    journey = journey_draft_make(purpose=journey_purpose_make())
    journey_submit(actor=journey.created_by, journey_id=journey.pk)

    with pytest.raises(PermissionDenied):
        journey_approve(actor=journey.created_by, journey_id=journey.pk)  # a marketer: not even a reviewer
    author = staff_make(role="compliance officer")
    own = journey_draft_make(purpose=journey_purpose_make(), author=author)
    journey_submit(actor=author, journey_id=own.pk)
    with pytest.raises(PermissionDenied):
        journey_approve(actor=author, journey_id=own.pk)

    assert _audited(own, actions.JOURNEY_APPROVE_REFUSED) == 1
    assert JourneyVersion.objects.get(journey=own).status == JourneyVersion.Status.SUBMITTED
    assert Journey.objects.get(pk=own.pk).status == Journey.Status.DRAFT


def test_r_send_scope_a_message_using_a_field_outside_the_form_cannot_be_submitted():
    purpose = journey_purpose_make()  # its form lists first_name and email
    steps = [StepSpec(kind=StepKind.SEND, subject="Hello", body_text="Born in {{ birth_year }}?")]
    journey = journey_draft_make(purpose=purpose, steps=steps)

    with pytest.raises(ValidationError) as refused:
        journey_submit(actor=journey.created_by, journey_id=journey.pk)

    assert "Step 1" in refused.value.messages[0]
    assert JourneyVersion.objects.get(journey=journey).status == JourneyVersion.Status.DRAFT
    assert _audited(journey, actions.JOURNEY_SUBMIT_REFUSED) == 1


def test_steps_only_go_forward_and_problems_name_the_step():
    steps = [
        StepSpec(kind=StepKind.SEND, subject="Hello", body_text="Hi."),
        StepSpec(kind=StepKind.BRANCH, branch_event_type="appointment.booked", wait_minutes=60, yes_position=1),
        StepSpec(kind=StepKind.WAIT),
    ]
    with pytest.raises(ValidationError) as refused:
        journey_draft_make(purpose=journey_purpose_make(), steps=steps)

    assert refused.value.messages == [
        "Step 2: the step if it happened must be a later step (steps only go forward).",
        "Step 3: say how long to wait, or until what time of day.",
    ]
    assert not Journey.objects.exists()


def test_a_rejected_version_goes_back_with_the_comment_and_can_be_fixed():
    journey = journey_draft_make(purpose=journey_purpose_make())
    journey_submit(actor=journey.created_by, journey_id=journey.pk)
    officer = staff_make(role="compliance officer")

    journey_reject(actor=officer, journey_id=journey.pk, comment="Say which clinic to call.")
    version = JourneyVersion.objects.get(journey=journey)
    assert (version.status, version.review_comment) == ("rejected", "Say which clinic to call.")
    assert AuditEvent.objects.get(action=actions.JOURNEY_REJECTED).details == {"version": 1, "comment_length": 25}

    journey_version_save(actor=journey.created_by, journey_id=journey.pk, name=journey.name, trigger=event_trigger(),
                         steps=FOLLOW_UP)  # fmt: skip
    journey_submit(actor=journey.created_by, journey_id=journey.pk)
    journey_approve(actor=officer, journey_id=journey.pk)
    assert Journey.objects.get(pk=journey.pk).status == Journey.Status.ACTIVE


def test_an_edit_is_a_new_version_and_running_enrolments_finish_on_theirs():
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    first_patient = patient_make()
    authorization_make(patient=first_patient, purpose=purpose)
    _enrol(first_patient, "e1")
    journey_steps_advance()  # first message queued; now waiting 3 "days"

    changed = [StepSpec(kind=StepKind.SEND, subject="A shorter journey", body_text="One message only.")]
    journey_version_save(actor=journey.created_by, journey_id=journey.pk, name=journey.name, trigger=event_trigger(),
                         steps=changed)  # fmt: skip
    # Until the new version is approved, the old one still enrols.
    journey.refresh_from_db()
    assert journey.live_version.number == 1
    journey_submit(actor=journey.created_by, journey_id=journey.pk)
    journey_approve(actor=staff_make(role="compliance officer"), journey_id=journey.pk)
    second_patient = patient_make()
    authorization_make(patient=second_patient, purpose=purpose)
    _enrol(second_patient, "e2")
    waiting_until = Enrolment.objects.get(patient=first_patient).due_at
    while timezone.now() <= waiting_until:
        journey_steps_advance()
    journey_steps_advance()

    journey.refresh_from_db()
    assert journey.live_version.number == 2
    assert JourneyVersion.objects.get(journey=journey, number=1).status == JourneyVersion.Status.SUPERSEDED
    first = Enrolment.objects.get(patient=first_patient)
    second = Enrolment.objects.get(patient=second_patient)
    assert (first.version.number, second.version.number) == (1, 2)
    assert Delivery.objects.filter(patient=first_patient).count() == 2  # version 1's two messages
    assert Delivery.objects.filter(patient=second_patient).count() == 1
    assert first.exit_reason == second.exit_reason == ExitReason.COMPLETED


def test_pause_holds_steps_and_messages_resume_runs_them_stop_ends_everything():
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    officer = staff_make(role="compliance officer")
    patients = [patient_make() for _ in range(3)]
    for n, patient in enumerate(patients):
        authorization_make(patient=patient, purpose=purpose)
        _enrol(patient, f"e{n}")
    journey_steps_advance()  # three first messages queued
    step_campaign = Delivery.objects.first().campaign

    journey_pause(actor=officer, journey_id=journey.pk)
    assert delivery_dispatch_batch(campaign_id=step_campaign.pk) == 0  # nothing claimed while paused
    assert Campaign.objects.get(pk=step_campaign.pk).status == Campaign.Status.PAUSED
    assert journey_steps_advance() == (0, set())

    journey_resume(actor=officer, journey_id=journey.pk)
    assert delivery_dispatch_batch(campaign_id=step_campaign.pk) == 3

    journey_steps_advance()  # the wait begins
    journey_stop(actor=officer, journey_id=journey.pk)
    assert set(Enrolment.objects.values_list("status", "exit_reason")) == {("ended", ExitReason.STOPPED)}
    assert journey_steps_advance() == (0, set())
    for action in (actions.JOURNEY_PAUSED, actions.JOURNEY_RESUMED, actions.JOURNEY_STOPPED):
        assert _audited(journey, action) == 1
    with pytest.raises(ValidationError):
        journey_resume(actor=officer, journey_id=journey.pk)


def test_stopping_blocks_the_queued_messages_in_the_same_transaction():
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    _enrol(patient, "e1")
    journey_steps_advance()

    journey_stop(actor=staff_make(role="compliance officer"), journey_id=journey.pk)

    delivery = Delivery.objects.get(patient=patient)
    assert (delivery.status, delivery.block_reason) == ("blocked", "campaign_cancelled")
    assert AuditEvent.objects.get(action=actions.JOURNEY_STOPPED).details == {
        "enrolments_ended": 1,
        "messages_blocked": 1,
    }


def test_marketers_cannot_pause_resume_or_stop():
    journey = journey_live_make(purpose=journey_purpose_make())
    marketer = staff_make(role="marketer")
    for control in (journey_pause, journey_stop):
        with pytest.raises(PermissionDenied):
            control(actor=marketer, journey_id=journey.pk)
    assert Journey.objects.get(pk=journey.pk).status == Journey.Status.ACTIVE


def test_a_reviewer_who_rewrites_a_draft_becomes_its_author_and_cannot_approve_it():
    journey = journey_draft_make(purpose=journey_purpose_make())
    officer = staff_make(role="compliance officer")
    journey_version_save(actor=officer, journey_id=journey.pk, name=journey.name, trigger=event_trigger(),
                         steps=FOLLOW_UP)  # fmt: skip
    journey_submit(actor=officer, journey_id=journey.pk)

    with pytest.raises(PermissionDenied):
        journey_approve(actor=officer, journey_id=journey.pk)
    assert JourneyVersion.objects.get(journey=journey).created_by == officer
