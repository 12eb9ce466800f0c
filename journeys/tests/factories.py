"""Journey test data through the real services: a purpose with a published form, a journey written by a marketer,
submitted, and approved by a compliance officer."""
import itertools

from accounts.tests.factories import staff_make
from consent.tests.factories import form_published_make, purpose_make
from journeys.models import StepKind, Trigger
from journeys.services.journeys import StepSpec, journey_approve, journey_create, journey_submit
from journeys.validation import TriggerSpec

_serial = itertools.count(1)

FOLLOW_UP = [
    StepSpec(kind=StepKind.SEND, subject="How is your new CPAP?", body_text="Hello {{ first_name }}, a quick check-in."),
    StepSpec(kind=StepKind.WAIT, wait_minutes=3 * 1440),
    StepSpec(kind=StepKind.SEND, subject="Tips for your CPAP", body_text="Three tips for a better night."),
]


def journey_purpose_make(**overrides):
    purpose = purpose_make(**overrides)
    form_published_make(purpose)
    return purpose


def event_trigger(event_type="equipment.delivered", conditions=None, **extra) -> TriggerSpec:
    return TriggerSpec(kind=Trigger.EVENT, event_type=event_type, event_conditions=conditions or {}, **extra)


def journey_draft_make(*, purpose, trigger=None, steps=None, author=None, name=None):
    author = author or staff_make(role="marketer")
    return journey_create(
        actor=author,
        name=name or f"Journey {next(_serial)}",
        purpose=purpose,
        trigger=trigger or event_trigger(),
        steps=list(steps or FOLLOW_UP),
    )


def journey_live_make(*, purpose, trigger=None, steps=None, author=None, approver=None, name=None):
    journey = journey_draft_make(purpose=purpose, trigger=trigger, steps=steps, author=author, name=name)
    journey_submit(actor=journey.created_by, journey_id=journey.pk)
    journey_approve(actor=approver or staff_make(role="compliance officer"), journey_id=journey.pk)
    journey.refresh_from_db()
    return journey
