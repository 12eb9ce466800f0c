"""A journey version in words, for the detail, review and results pages: the trigger, the re-entry rule, the goal and
each step as one line ("Send “How is your CPAP?”", "Wait 3 days", "Branch: Appointment booked within 7 days?
yes → 5 / no → 4", "Exit"), drawn as boxes and arrows by templates/journeys/_flow.html. Words only: no patient's
data is ever part of a journey's definition."""
from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from consent.events import attribute_label, event_type_label
from journeys.dates import date_trigger_label
from journeys.models import JourneyStep, JourneyVersion, Reentry, StepKind, Trigger
from journeys.selectors.flow import journey_step_list
from journeys.timing import wait_label


def conditions_words(conditions: dict) -> str:
    """"Equipment type CPAP, Quantity 2"."""
    return ", ".join(f"{attribute_label(name)} {value}" for name, value in (conditions or {}).items())


def _event_words(event_type: str, conditions: dict) -> str:
    if conditions:
        return _("“%(event)s” with %(conditions)s") % {
            "event": event_type_label(event_type), "conditions": conditions_words(conditions),
        }
    return _("“%(event)s”") % {"event": event_type_label(event_type)}


def trigger_words(version: JourneyVersion, *, purpose_name: str) -> str:
    if version.trigger == Trigger.EVENT:
        return _("When the care event %(event)s is recorded") % {
            "event": _event_words(version.event_type, version.event_conditions),
        }
    if version.trigger == Trigger.DATE:
        return _("%(when)s (a date on the patient's record)") % {
            "when": date_trigger_label(version.date_field, version.offset_days),
        }
    if version.trigger == Trigger.SEGMENT:
        name = version.segment.name if version.segment_id else _("(none)")
        return _("When a patient enters the segment “%(segment)s”") % {"segment": name}
    days = version.days_before_expiry
    return ngettext(
        "%(count)s day before a patient's authorization for “%(purpose)s” expires",
        "%(count)s days before a patient's authorization for “%(purpose)s” expires",
        days,
    ) % {"count": days, "purpose": purpose_name}


def reentry_words(version: JourneyVersion) -> str:
    if version.reentry == Reentry.AFTER_DAYS:
        return _("Again, %(count)s days after the previous enrolment began") % {"count": version.reentry_days}
    return Reentry(version.reentry).label if version.reentry in Reentry.values else version.reentry


def goal_words(version: JourneyVersion) -> str:
    if not version.conversion_event_type:
        return _("No goal")
    return _("“%(event)s” within %(count)s days of entering") % {
        "event": event_type_label(version.conversion_event_type), "count": version.conversion_days,
    }


def holdout_words(version: JourneyVersion) -> str:
    if not version.holdout_percent:
        return _("None: every patient who enters gets the messages")
    return _("%(percent)s %% of patients who enter, chosen at random, are sent nothing (the control group)") % {
        "percent": version.holdout_percent,
    }


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
    return _("end") if target > count else str(target)


def step_words(step: JourneyStep, *, count: int) -> Box:
    if step.kind == StepKind.SEND:
        subject = step.campaign.subject if step.campaign_id else ""
        detail = ""
        if step.campaign_id and step.campaign.template_id:
            detail = _("Template “%(template)s”") % {"template": step.campaign.template.name}
        box = Box(step.position, step.kind, _("Send “%(subject)s”") % {"subject": subject}, detail)
    elif step.kind == StepKind.WAIT:
        text = _("Wait %(duration)s") % {"duration": wait_label(step.wait_minutes)} if step.wait_minutes else _("Wait")
        if step.until_local_time is not None:
            text = _("%(wait)s, then until %(time)s in the patient's time zone") % {
                "wait": text, "time": f"{step.until_local_time:%H:%M}",
            }
        box = Box(step.position, step.kind, text)
    elif step.kind == StepKind.BRANCH:
        what = (
            _("Clicked a link")
            if step.branch_on_click
            else event_type_label(step.branch_event_type)
            + (f" ({conditions_words(step.branch_event_conditions)})" if step.branch_event_conditions else "")
        )
        yes = _target(step.yes_position, step=step.position, count=count)
        no = _target(step.no_position, step=step.position, count=count)
        return Box(
            step.position,
            step.kind,
            _("Branch: %(what)s within %(duration)s? yes → %(yes)s / no → %(no)s") % {
                "what": what, "duration": wait_label(step.wait_minutes), "yes": yes, "no": no,
            },
        )
    else:
        return Box(step.position, step.kind, _("Exit"))
    if step.next_position is not None:
        box = Box(box.position, box.kind, box.text, box.detail,
                  (_("then → %(target)s") % {"target": _target(step.next_position, step=step.position, count=count)},))
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
