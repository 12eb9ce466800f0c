"""What a journey version must be before it is saved (ADR 0016): a trigger that names known codes, steps that only
go forward (so an enrolment can never loop, and a step's message goes out at most once per enrolment), waits and
branches with a time, a click branch only where the purpose counts clicks. Messages are checked like a
campaign's when the version is submitted (journeys.services.journeys.journey_submit).

Every problem is a sentence for the marketer that names the step, never a patient's data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from campaigns.models import Segment
from consent.events import ATTRIBUTES, EVENT_TYPES
from consent.models import Purpose
from journeys.dates import DATE_FIELDS
from journeys.models import Reentry, StepKind, Trigger

MAX_STEPS = 20
MAX_WAIT_MINUTES = 365 * 1440
MAX_OFFSET_DAYS = 365


@dataclass(frozen=True)
class TriggerSpec:
    kind: str
    event_type: str = ""
    event_conditions: dict = field(default_factory=dict)
    date_field: str = ""
    offset_days: int = 0
    segment: Segment | None = None
    days_before_expiry: int = 30
    reentry: str = Reentry.AFTER_EXIT
    reentry_days: int = 0
    conversion_event_type: str = ""
    conversion_days: int = 30
    holdout_percent: int = 0


def conditions_problems(event_type: str, conditions: dict, *, where: str) -> list[str]:
    """Conditions name attributes of the event type, with valid coded values."""
    known = EVENT_TYPES.get(event_type)
    if known is None:
        return []
    problems = []
    if not isinstance(conditions, dict):
        return [f"{where}: conditions are attribute codes."]
    for name, value in conditions.items():
        if name not in known.attributes:
            problems.append(f"{where}: {known.label} events have no attribute called {name!r}.")
        elif not ATTRIBUTES[name].accepts(value):
            problems.append(f"{where}: that is not a valid {ATTRIBUTES[name].label.lower()} code.")
    return problems


def _trigger_problems(trigger: TriggerSpec) -> list[str]:
    problems = []
    if trigger.kind not in Trigger.values:
        return ["Choose what starts the journey."]
    if trigger.kind == Trigger.EVENT:
        if trigger.event_type not in EVENT_TYPES:
            problems.append("Choose the care event that starts the journey.")
        problems += conditions_problems(trigger.event_type, trigger.event_conditions, where="Trigger")
    elif trigger.kind == Trigger.DATE:
        if trigger.date_field not in DATE_FIELDS:
            problems.append("Choose the date on the patient's record that starts the journey.")
        if not -MAX_OFFSET_DAYS <= trigger.offset_days <= MAX_OFFSET_DAYS:
            problems.append(f"The offset is at most {MAX_OFFSET_DAYS} days before or after the date.")
    elif trigger.kind == Trigger.SEGMENT:
        if trigger.segment is None:
            problems.append("Choose the segment whose new members enter the journey.")
    elif not 1 <= trigger.days_before_expiry <= 365:
        problems.append("Invite renewals between 1 and 365 days before an authorization expires.")
    if trigger.reentry not in Reentry.values:
        problems.append("Choose whether a patient may enter the journey again.")
    if trigger.reentry == Reentry.AFTER_DAYS and not 1 <= trigger.reentry_days <= 3650:
        problems.append("Say after how many days (1 to 3650) a patient may enter again.")
    if trigger.conversion_event_type and trigger.conversion_event_type not in EVENT_TYPES:
        problems.append("Choose the care event that counts as the journey's goal.")
    if not 1 <= trigger.conversion_days <= 365:
        problems.append("The goal is counted within 1 to 365 days of entering.")
    if not 0 <= trigger.holdout_percent <= 50:
        problems.append("Hold out between 0 and 50 % of patients as a control group.")
    if trigger.holdout_percent and not trigger.conversion_event_type:
        problems.append("A control group needs a goal to compare: choose the event that counts as converting.")
    return problems


def _target_problems(position: int, target: int | None, count: int, *, what: str) -> list[str]:
    if target is None:
        return []
    if not position < target <= count + 1:
        return [f"Step {position}: {what} must be a later step (steps only go forward)."]
    return []


def version_problems(*, purpose: Purpose, trigger: TriggerSpec, steps: list) -> list[str]:
    """Every problem with this trigger and these steps (journeys.services.journeys.StepSpec), in order."""
    problems = _trigger_problems(trigger)
    if not steps:
        return [*problems, "Add at least one step."]
    if len(steps) > MAX_STEPS:
        problems.append(f"A journey has at most {MAX_STEPS} steps.")
    if not any(step.kind == StepKind.SEND for step in steps):
        problems.append("Add at least one message to send.")
    count = len(steps)
    for position, step in enumerate(steps, start=1):
        if step.kind not in StepKind.values:
            problems.append(f"Step {position}: choose what the step does.")
            continue
        problems += _target_problems(position, step.next_position, count, what="the next step")
        if step.kind == StepKind.SEND:
            if not step.subject.strip():
                problems.append(f"Step {position}: the message needs a subject.")
        elif step.kind == StepKind.WAIT:
            if not 0 <= step.wait_minutes <= MAX_WAIT_MINUTES:
                problems.append(f"Step {position}: wait at most a year.")
            if step.wait_minutes == 0 and step.until_local_time is None:
                problems.append(f"Step {position}: say how long to wait, or until what time of day.")
        elif step.kind == StepKind.BRANCH:
            if not 1 <= step.wait_minutes <= MAX_WAIT_MINUTES:
                problems.append(f"Step {position}: say how long to wait for it to happen (at most a year).")
            if not step.branch_event_type and not step.branch_on_click:
                problems.append(f"Step {position}: a branch waits for a care event or a click.")
            if step.branch_event_type and step.branch_event_type not in EVENT_TYPES:
                problems.append(f"Step {position}: choose the care event the branch waits for.")
            problems += conditions_problems(
                step.branch_event_type, step.branch_event_conditions, where=f"Step {position}"
            )
            if step.branch_on_click and not purpose.tracking_enabled:
                problems.append(
                    f"Step {position}: clicks are not counted for {purpose.name}; branch on a care event instead."
                )
            problems += _target_problems(position, step.yes_position, count, what="the step if it happened")
            problems += _target_problems(position, step.no_position, count, what="the step if it did not")
    return problems
