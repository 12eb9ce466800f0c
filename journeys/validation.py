"""What a journey version must be before it is saved (ADR 0016): a trigger that names known codes, steps that only
go forward (so an enrolment can never loop, and a step's message goes out at most once per enrolment), waits and
branches with a time, a click branch only where the purpose counts clicks. Messages are checked like a
campaign's when the version is submitted (journeys.services.journeys.journey_submit).

Every problem is a sentence for the marketer that names the step, never a patient's data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.translation import gettext as _

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
        return [_("%(where)s: conditions are attribute codes.") % {"where": where}]
    for name, value in conditions.items():
        if name not in known.attributes:
            problems.append(_("%(where)s: %(event)s events have no attribute called %(name)s.")
                            % {"where": where, "event": known.label, "name": repr(name)})
        elif not ATTRIBUTES[name].accepts(value):
            problems.append(_("%(where)s: that is not a valid %(attribute)s code.")
                            % {"where": where, "attribute": ATTRIBUTES[name].label.lower()})
    return problems


def _trigger_problems(trigger: TriggerSpec) -> list[str]:
    problems = []
    if trigger.kind not in Trigger.values:
        return [_("Choose what starts the journey.")]
    if trigger.kind == Trigger.EVENT:
        if trigger.event_type not in EVENT_TYPES:
            problems.append(_("Choose the care event that starts the journey."))
        problems += conditions_problems(trigger.event_type, trigger.event_conditions, where=_("Trigger"))
    elif trigger.kind == Trigger.DATE:
        if trigger.date_field not in DATE_FIELDS:
            problems.append(_("Choose the date on the patient's record that starts the journey."))
        if not -MAX_OFFSET_DAYS <= trigger.offset_days <= MAX_OFFSET_DAYS:
            problems.append(
                _("The offset is at most %(count)s days before or after the date.") % {"count": MAX_OFFSET_DAYS}
            )
    elif trigger.kind == Trigger.SEGMENT:
        if trigger.segment is None:
            problems.append(_("Choose the segment whose new members enter the journey."))
    elif not 1 <= trigger.days_before_expiry <= 365:
        problems.append(_("Invite renewals between 1 and 365 days before an authorization expires."))
    if trigger.reentry not in Reentry.values:
        problems.append(_("Choose whether a patient may enter the journey again."))
    if trigger.reentry == Reentry.AFTER_DAYS and not 1 <= trigger.reentry_days <= 3650:
        problems.append(_("Say after how many days (1 to 3650) a patient may enter again."))
    if trigger.conversion_event_type and trigger.conversion_event_type not in EVENT_TYPES:
        problems.append(_("Choose the care event that counts as the journey's goal."))
    if not 1 <= trigger.conversion_days <= 365:
        problems.append(_("The goal is counted within 1 to 365 days of entering."))
    if not 0 <= trigger.holdout_percent <= 50:
        problems.append(_("Hold out between 0 and 50 % of patients as a control group."))
    if trigger.holdout_percent and not trigger.conversion_event_type:
        problems.append(_("A control group needs a goal to compare: choose the event that counts as converting."))
    return problems


def _target_problems(position: int, target: int | None, count: int, *, what: str) -> list[str]:
    if target is None:
        return []
    if not position < target <= count + 1:
        return [_("Step %(position)s: %(what)s must be a later step (steps only go forward).")
                % {"position": position, "what": what}]
    return []


def version_problems(*, purpose: Purpose, trigger: TriggerSpec, steps: list) -> list[str]:
    """Every problem with this trigger and these steps (journeys.services.journeys.StepSpec), in order."""
    problems = _trigger_problems(trigger)
    if not steps:
        return [*problems, _("Add at least one step.")]
    if len(steps) > MAX_STEPS:
        problems.append(_("A journey has at most %(count)s steps.") % {"count": MAX_STEPS})
    if not any(step.kind == StepKind.SEND for step in steps):
        problems.append(_("Add at least one message to send."))
    count = len(steps)
    for position, step in enumerate(steps, start=1):
        at = {"position": position}
        if step.kind not in StepKind.values:
            problems.append(_("Step %(position)s: choose what the step does.") % at)
            continue
        problems += _target_problems(position, step.next_position, count, what=_("the next step"))
        if step.kind == StepKind.SEND:
            if not step.subject.strip():
                problems.append(_("Step %(position)s: the message needs a subject.") % at)
        elif step.kind == StepKind.WAIT:
            if not 0 <= step.wait_minutes <= MAX_WAIT_MINUTES:
                problems.append(_("Step %(position)s: wait at most a year.") % at)
            if step.wait_minutes == 0 and step.until_local_time is None:
                problems.append(_("Step %(position)s: say how long to wait, or until what time of day.") % at)
        elif step.kind == StepKind.BRANCH:
            if not 1 <= step.wait_minutes <= MAX_WAIT_MINUTES:
                problems.append(_("Step %(position)s: say how long to wait for it to happen (at most a year).") % at)
            if not step.branch_event_type and not step.branch_on_click:
                problems.append(_("Step %(position)s: a branch waits for a care event or a click.") % at)
            if step.branch_event_type and step.branch_event_type not in EVENT_TYPES:
                problems.append(_("Step %(position)s: choose the care event the branch waits for.") % at)
            problems += conditions_problems(
                step.branch_event_type, step.branch_event_conditions, where=_("Step %(position)s") % at
            )
            if step.branch_on_click and not purpose.tracking_enabled:
                problems.append(
                    _("Step %(position)s: clicks are not counted for %(purpose)s; branch on a care event instead.")
                    % {"position": position, "purpose": purpose.name}
                )
            problems += _target_problems(position, step.yes_position, count, what=_("the step if it happened"))
            problems += _target_problems(position, step.no_position, count, what=_("the step if it did not"))
    return problems
