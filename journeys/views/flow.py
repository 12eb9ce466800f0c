"""A journey version in words, for the detail, review and results pages: the trigger, the re-entry rule, the goal and
each step as one line ("Send “How is your CPAP?”", "Wait 3 days", "Branch: Appointment booked within 7 days?
yes → 5 / no → 4", "Exit"), drawn as boxes and arrows by templates/journeys/_flow.html. Words only: no patient's
data is ever part of a journey's definition."""
from __future__ import annotations

from dataclasses import dataclass

from consent.events import attribute_label, event_type_label
from journeys.dates import date_trigger_label
from journeys.models import JourneyStep, JourneyVersion, Reentry, StepKind, Trigger
from journeys.selectors.flow import journey_step_list
from journeys.timing import wait_label


def conditions_words(conditions: dict) -> str:
    """"Equipment type CPAP, Quantity 2"."""
    return ", ".join(f"{attribute_label(name)} {value}" for name, value in (conditions or {}).items())


def _event_words(event_type: str, conditions: dict) -> str:
    words = f"“{event_type_label(event_type)}”"
    if conditions:
        words += f" with {conditions_words(conditions)}"
    return words


def trigger_words(version: JourneyVersion, *, purpose_name: str) -> str:
    if version.trigger == Trigger.EVENT:
        return f"When the care event {_event_words(version.event_type, version.event_conditions)} is recorded"
    if version.trigger == Trigger.DATE:
        return f"{date_trigger_label(version.date_field, version.offset_days)} (a date on the patient's record)"
    if version.trigger == Trigger.SEGMENT:
        name = version.segment.name if version.segment_id else "(none)"
        return f"When a patient enters the segment “{name}”"
    days = version.days_before_expiry
    return f"{days} day{'s' if days != 1 else ''} before a patient's authorization for “{purpose_name}” expires"


def reentry_words(version: JourneyVersion) -> str:
    if version.reentry == Reentry.AFTER_DAYS:
        return f"Again, {version.reentry_days} days after the previous enrolment began"
    return Reentry(version.reentry).label if version.reentry in Reentry.values else version.reentry


def goal_words(version: JourneyVersion) -> str:
    if not version.conversion_event_type:
        return "No goal"
    return f"“{event_type_label(version.conversion_event_type)}” within {version.conversion_days} days of entering"


def holdout_words(version: JourneyVersion) -> str:
    if not version.holdout_percent:
        return "None: every patient who enters gets the messages"
    return f"{version.holdout_percent} % of patients who enter, chosen at random, are sent nothing (the control group)"


@dataclass(frozen=True)
class Box:
    """One step as a box of the picture. `jumps`: where it goes when that is not simply the next box."""

    position: int
    kind: str
    text: str
    detail: str = ""
    jumps: tuple[str, ...] = ()

    @property
    def kind_label(self) -> str:
        return StepKind(self.kind).label if self.kind in StepKind.values else self.kind


def _target(position: int | None, *, step: int, count: int) -> str:
    target = step + 1 if position is None else position
    return "end" if target > count else str(target)


def step_words(step: JourneyStep, *, count: int) -> Box:
    if step.kind == StepKind.SEND:
        subject = step.campaign.subject if step.campaign_id else ""
        detail = ""
        if step.campaign_id and step.campaign.template_id:
            detail = f"Template “{step.campaign.template.name}”"
        box = Box(step.position, step.kind, f"Send “{subject}”", detail)
    elif step.kind == StepKind.WAIT:
        text = f"Wait {wait_label(step.wait_minutes)}" if step.wait_minutes else "Wait"
        if step.until_local_time is not None:
            text += f", then until {step.until_local_time:%H:%M} in the patient's time zone"
        box = Box(step.position, step.kind, text)
    elif step.kind == StepKind.BRANCH:
        what = (
            "Clicked a link"
            if step.branch_on_click
            else event_type_label(step.branch_event_type)
            + (f" ({conditions_words(step.branch_event_conditions)})" if step.branch_event_conditions else "")
        )
        yes = _target(step.yes_position, step=step.position, count=count)
        no = _target(step.no_position, step=step.position, count=count)
        return Box(
            step.position,
            step.kind,
            f"Branch: {what} within {wait_label(step.wait_minutes)}? yes → {yes} / no → {no}",
        )
    else:
        return Box(step.position, step.kind, "Exit")
    if step.next_position is not None:
        box = Box(box.position, box.kind, box.text, box.detail,
                  (f"then → {_target(step.next_position, step=step.position, count=count)}",))
    return box


@dataclass(frozen=True)
class VersionFlow:
    version: JourneyVersion
    trigger: str
    reentry: str
    goal: str
    holdout: str
    boxes: list[Box]
    steps: list[JourneyStep]


def version_flow(version: JourneyVersion, *, purpose_name: str) -> VersionFlow:
    steps = journey_step_list(version_id=version.pk)
    return VersionFlow(
        version=version,
        trigger=trigger_words(version, purpose_name=purpose_name),
        reentry=reentry_words(version),
        goal=goal_words(version),
        holdout=holdout_words(version),
        boxes=[step_words(step, count=len(steps)) for step in steps],
        steps=steps,
    )
