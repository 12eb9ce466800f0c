"""A journey's life (ADR 0016): written by a marketer as a draft version, submitted, approved by a compliance officer
who is not its author (after the step-up, in the view), or rejected with a comment; an edit of an approved version
is a new version that needs approval while the approved one keeps enrolling; running enrolments finish on the
version they started. Pause, resume and stop, each audited, by compliance officers and administrators.

Every write is one durable transaction with its audit rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import actions
from audit.services import audit_record
from campaigns import notices
from campaigns.content import content_of, content_problems
from campaigns.models import ContentBlock, EmailTemplate
from campaigns.permissions import sending_control_check
from campaigns.services.journey_steps import (
    journey_step_campaign_create,
    journey_step_campaigns_cancel,
    journey_step_campaigns_delete,
    journey_step_campaigns_open,
    journey_step_campaigns_pause,
    journey_step_campaigns_resume,
)
from campaigns.services.lifecycle import COMMENT_MAX_LENGTH
from consent.models import Purpose
from journeys.models import (
    Enrolment,
    ExitReason,
    Journey,
    JourneyStep,
    JourneyVersion,
    StepKind,
)
from journeys.selectors.journeys import journey_step_campaign_ids
from journeys.tasks import journey_advance_task
from journeys.validation import TriggerSpec, version_problems


@dataclass(frozen=True)
class StepSpec:
    """One step as the builder sends it. Positions are 1-based; None for "the next step"."""

    kind: str
    subject: str = ""
    body_text: str = ""
    template: EmailTemplate | None = None
    blocks: tuple[ContentBlock, ...] = ()
    wait_minutes: int = 0
    until_local_time: time | None = None
    branch_event_type: str = ""
    branch_event_conditions: dict = field(default_factory=dict)
    branch_on_click: bool = False
    yes_position: int | None = None
    no_position: int | None = None
    next_position: int | None = None


def _refuse(problems: list[str]) -> None:
    if problems:
        raise ValidationError(problems)


def journey_create(*, actor, name: str, purpose: Purpose, trigger: TriggerSpec, steps: list[StepSpec]) -> Journey:
    """A new journey with its first version, a draft."""
    name = name.strip()
    journey = Journey(name=name, purpose=purpose, created_by=actor)
    journey.full_clean(exclude=["live_version"])
    _refuse(version_problems(purpose=purpose, trigger=trigger, steps=steps))
    with transaction.atomic(durable=True):
        journey.save(force_insert=True)
        audit_record(
            actor=actor,
            action=actions.JOURNEY_CREATED,
            object_type="journey",
            object_id=journey.pk,
            details={"purpose": purpose.code},
        )
        _version_create(actor=actor, journey=journey, number=1, trigger=trigger, steps=steps)
    return journey


def _step_name(journey: Journey, number: int, position: int) -> str:
    return f"{journey.name} · v{number} · step {position}"[:200]


def _steps_write(*, actor, journey: Journey, version: JourneyVersion, steps: list[StepSpec]) -> None:
    for position, spec in enumerate(steps, start=1):
        campaign = None
        if spec.kind == StepKind.SEND:
            campaign = journey_step_campaign_create(
                actor=actor,
                name=_step_name(journey, version.number, position),
                purpose=journey.purpose,
                subject=spec.subject,
                body_text=spec.body_text,
                template=spec.template,
                blocks=spec.blocks,
            )
        step = JourneyStep(
            version=version,
            position=position,
            kind=spec.kind,
            campaign=campaign,
            wait_minutes=spec.wait_minutes,
            until_local_time=spec.until_local_time,
            branch_event_type=spec.branch_event_type,
            branch_event_conditions=spec.branch_event_conditions,
            branch_on_click=spec.branch_on_click,
            yes_position=spec.yes_position,
            no_position=spec.no_position,
            next_position=spec.next_position,
        )
        step.full_clean(exclude=["version", "campaign"])
        step.save(force_insert=True)


def _trigger_fields(trigger: TriggerSpec) -> dict:
    return {
        "trigger": trigger.kind,
        "event_type": trigger.event_type,
        "event_conditions": trigger.event_conditions,
        "date_field": trigger.date_field,
        "offset_days": trigger.offset_days,
        "segment": trigger.segment,
        "days_before_expiry": trigger.days_before_expiry,
        "reentry": trigger.reentry,
        "reentry_days": trigger.reentry_days,
        "conversion_event_type": trigger.conversion_event_type,
        "conversion_days": trigger.conversion_days,
        "holdout_percent": trigger.holdout_percent,
    }


def _version_create(*, actor, journey: Journey, number: int, trigger: TriggerSpec, steps: list[StepSpec]):
    version = JourneyVersion(journey=journey, number=number, created_by=actor, **_trigger_fields(trigger))
    version.full_clean(exclude=["journey"])
    version.save(force_insert=True)
    _steps_write(actor=actor, journey=journey, version=version, steps=steps)
    audit_record(
        actor=actor,
        action=actions.JOURNEY_VERSION_CREATED,
        object_type="journey",
        object_id=journey.pk,
        details={"version": number, "trigger": trigger.kind, "steps": [spec.kind for spec in steps]},
    )
    return version


def _journey_locked(journey_id: int) -> Journey:
    return Journey.objects.select_for_update(of=("self",)).select_related("purpose").get(pk=journey_id)


def journey_version_open(journey: Journey) -> JourneyVersion | None:
    """The version being written or reviewed (draft, submitted or rejected), if any: at most one at a time."""
    return (
        journey.versions.filter(
            status__in=(JourneyVersion.Status.DRAFT, JourneyVersion.Status.SUBMITTED, JourneyVersion.Status.REJECTED)
        )
        .order_by("-number")
        .first()
    )


def journey_version_save(
    *, actor, journey_id: int, name: str, trigger: TriggerSpec, steps: list[StepSpec]
) -> JourneyVersion:
    """Write the journey: its draft or rejected version is rewritten in place (it goes back to draft); when the
    latest version is approved (or superseded) a new version is created from what was sent, and the approved
    one keeps enrolling until the new one is approved. A submitted version cannot be edited."""
    with transaction.atomic(durable=True):
        journey = _journey_locked(journey_id)
        if journey.status == Journey.Status.STOPPED:
            raise ValidationError(_("A stopped journey cannot be changed."))
        _refuse(version_problems(purpose=journey.purpose, trigger=trigger, steps=steps))
        name = name.strip()
        if name and name != journey.name:
            journey.name = name
            journey.full_clean(exclude=["live_version"])
            journey.save(update_fields=["name"])
        version = journey_version_open(journey)
        if version is not None and version.status == JourneyVersion.Status.SUBMITTED:
            raise ValidationError(
                _("This version waits for review: it cannot be changed until it is approved or rejected.")
            )
        if version is None:
            latest = journey.versions.order_by("-number").first()
            return _version_create(
                actor=actor, journey=journey, number=(latest.number + 1 if latest else 1), trigger=trigger, steps=steps
            )
        old_campaigns = journey_step_campaign_ids(version_id=version.pk)
        JourneyStep.objects.filter(version=version).delete()
        journey_step_campaigns_delete(campaign_ids=old_campaigns)
        for name_, value in _trigger_fields(trigger).items():
            setattr(version, name_, value)
        version.status = JourneyVersion.Status.DRAFT
        # Whoever rewrites a version is its author: a reviewer who edits a draft can no longer approve it.
        version.created_by = actor
        version.full_clean(exclude=["journey"])
        version.save()
        _steps_write(actor=actor, journey=journey, version=version, steps=steps)
        audit_record(
            actor=actor,
            action=actions.JOURNEY_VERSION_UPDATED,
            object_type="journey",
            object_id=journey.pk,
            details={"version": version.number, "trigger": trigger.kind, "steps": [spec.kind for spec in steps]},
        )
    return version


def _send_step_problems(version: JourneyVersion) -> list:
    problems = []
    for step in version.steps.filter(kind=StepKind.SEND).select_related("campaign__purpose", "campaign__template"):
        for problem in content_problems(content_of(step.campaign)):
            problems.append((step.position, problem))
    return problems


def journey_submit(*, actor, journey_id: int) -> JourneyVersion:
    """Submit the draft (or rejected) version for review once every message passes the campaign checks (merge
    fields within the purpose's form, R-SEND-SCOPE; approved template and blocks). A refusal is audited (codes)."""
    refused = []
    with transaction.atomic(durable=True):
        journey = _journey_locked(journey_id)
        version = journey_version_open(journey)
        if version is None or version.status == JourneyVersion.Status.SUBMITTED:
            raise ValidationError(_("There is no draft version to submit."))
        refused = _send_step_problems(version)
        if refused:
            audit_record(
                actor=actor,
                action=actions.JOURNEY_SUBMIT_REFUSED,
                object_type="journey",
                object_id=journey.pk,
                details={
                    "version": version.number,
                    "problems": sorted({problem.code for _, problem in refused}),
                    "steps": sorted({position for position, _ in refused}),
                },
            )
        else:
            version.status = JourneyVersion.Status.SUBMITTED
            version.submitted_at = timezone.now()
            version.save(update_fields=["status", "submitted_at"])
            audit_record(
                actor=actor,
                action=actions.JOURNEY_SUBMITTED,
                object_type="journey",
                object_id=journey.pk,
                details={"version": version.number},
            )
            notices.journey_submitted_notify(
                subject=f"{journey.name} · v{version.number}",
                link=reverse("journeys:review", args=[journey.pk]),
                actor=actor,
            )
    if refused:  # after the commit, so that the refusal stays on the record
        raise ValidationError(
            [_("Step %(position)s: %(problem)s") % {"position": position, "problem": problem.message}
             for position, problem in refused],
            code="content",
        )
    return version


def _submitted_locked(journey_id: int) -> tuple[Journey, JourneyVersion]:
    journey = _journey_locked(journey_id)
    version = journey.versions.select_for_update().filter(status=JourneyVersion.Status.SUBMITTED).first()
    if version is None:
        raise ValidationError(_("No version of this journey waits for review."))
    return journey, version


def journey_approve(*, actor, journey_id: int) -> JourneyVersion:
    """Approve the submitted version: it becomes the live one (new enrolments start on it; the previous live
    version is superseded and its running enrolments finish on it), its messages open for sending, and the
    journey is active (unless paused, which it stays). The author can never approve their own version."""
    sending_control_check(actor)
    refused = False
    with transaction.atomic(durable=True):
        journey, version = _submitted_locked(journey_id)
        refused = version.created_by_id == actor.pk
        if refused:
            audit_record(
                actor=actor,
                action=actions.JOURNEY_APPROVE_REFUSED,
                object_type="journey",
                object_id=journey.pk,
                details={"version": version.number, "reason": "author"},
            )
        else:
            now = timezone.now()
            previous = journey.live_version
            if previous is not None:
                JourneyVersion.objects.filter(pk=previous.pk).update(status=JourneyVersion.Status.SUPERSEDED)
            version.status = JourneyVersion.Status.APPROVED
            version.approved_by, version.approved_at = actor, now
            version.reviewed_by, version.reviewed_at, version.review_comment = actor, now, ""
            version.save(
                update_fields=["status", "approved_by", "approved_at", "reviewed_by", "reviewed_at", "review_comment"]
            )
            paused = journey.status == Journey.Status.PAUSED
            journey.live_version = version
            journey.status = Journey.Status.PAUSED if paused else Journey.Status.ACTIVE
            journey.save(update_fields=["live_version", "status"])
            journey_step_campaigns_open(
                actor=actor, campaign_ids=journey_step_campaign_ids(version_id=version.pk), paused=paused, now=now
            )
            audit_record(
                actor=actor,
                action=actions.JOURNEY_APPROVED,
                object_type="journey",
                object_id=journey.pk,
                details={"version": version.number, "superseded": previous.number if previous else None},
            )
            notices.journey_approved_notify(
                subject=f"{journey.name} · v{version.number}",
                link=reverse("journeys:detail", args=[journey.pk]),
                actor=actor,
                author=version.created_by,
            )
    if refused:
        raise PermissionDenied("A journey's author cannot approve it.")
    return version


def journey_reject(*, actor, journey_id: int, comment: str) -> JourneyVersion:
    """Send the submitted version back to its author with the reviewer's comment (the audit keeps its length)."""
    sending_control_check(actor)
    comment = comment.strip()
    if not comment:
        raise ValidationError(_("Say why the journey is rejected: the comment is required."))
    if len(comment) > COMMENT_MAX_LENGTH:
        raise ValidationError(
            _("Keep the comment under %(count)s characters.") % {"count": COMMENT_MAX_LENGTH}
        )
    with transaction.atomic(durable=True):
        journey, version = _submitted_locked(journey_id)
        version.status = JourneyVersion.Status.REJECTED
        version.review_comment, version.reviewed_by, version.reviewed_at = comment, actor, timezone.now()
        version.save(update_fields=["status", "review_comment", "reviewed_by", "reviewed_at"])
        audit_record(
            actor=actor,
            action=actions.JOURNEY_REJECTED,
            object_type="journey",
            object_id=journey.pk,
            details={"version": version.number, "comment_length": len(comment)},
        )
        notices.journey_rejected_notify(
            subject=f"{journey.name} · v{version.number}",
            link=reverse("journeys:detail", args=[journey.pk]),
            actor=actor,
            author=version.created_by,
            comment=comment,
        )
    return version


def journey_pause(*, actor, journey_id: int) -> Journey:
    """No enrolment, no step and no claim of a queued message until resumed (a batch already claimed finishes)."""
    sending_control_check(actor)
    with transaction.atomic(durable=True):
        journey = _journey_locked(journey_id)
        if journey.status != Journey.Status.ACTIVE:
            raise ValidationError(
                _("A %(status)s journey cannot be paused.") % {"status": journey.get_status_display().lower()}
            )
        journey.status = Journey.Status.PAUSED
        journey.save(update_fields=["status"])
        journey_step_campaigns_pause(actor=actor, campaign_ids=journey_step_campaign_ids(journey_id=journey.pk))
        audit_record(actor=actor, action=actions.JOURNEY_PAUSED, object_type="journey", object_id=journey.pk)
    return journey


def journey_resume(*, actor, journey_id: int) -> Journey:
    """Active again: steps that came due meanwhile run at once (quiet hours still apply)."""
    sending_control_check(actor)
    with transaction.atomic(durable=True):
        journey = _journey_locked(journey_id)
        if journey.status != Journey.Status.PAUSED:
            raise ValidationError(
                _("A %(status)s journey cannot be resumed.") % {"status": journey.get_status_display().lower()}
            )
        journey.status = Journey.Status.ACTIVE
        journey.save(update_fields=["status"])
        journey_step_campaigns_resume(actor=actor, campaign_ids=journey_step_campaign_ids(journey_id=journey.pk))
        audit_record(actor=actor, action=actions.JOURNEY_RESUMED, object_type="journey", object_id=journey.pk)
        transaction.on_commit(journey_advance_task.delay)
    return journey


def journey_stop(*, actor, journey_id: int) -> Journey:
    """For good: every running enrolment ends (stopped) and every queued message of the journey is blocked, in one
    transaction. Messages a worker is sending at that moment finish (the cancel waits for their batch)."""
    sending_control_check(actor)
    with transaction.atomic(durable=True):
        journey = _journey_locked(journey_id)
        if journey.status == Journey.Status.STOPPED:
            raise ValidationError(_("This journey is already stopped."))
        now = timezone.now()
        running = list(
            Enrolment.objects.select_for_update()
            .filter(journey=journey, status=Enrolment.Status.ACTIVE)
            .order_by("pk")
            .values_list("id", flat=True)
        )
        Enrolment.objects.filter(pk__in=running).update(
            status=Enrolment.Status.ENDED, ended_at=now, exit_reason=ExitReason.STOPPED, step_started_at=None
        )
        blocked = journey_step_campaigns_cancel(
            actor=actor, campaign_ids=journey_step_campaign_ids(journey_id=journey.pk)
        )
        journey.status = Journey.Status.STOPPED
        journey.save(update_fields=["status"])
        audit_record(
            actor=actor,
            action=actions.JOURNEY_STOPPED,
            object_type="journey",
            object_id=journey.pk,
            details={"enrolments_ended": len(running), "messages_blocked": blocked},
        )
        if running:
            audit_record(
                actor=actor,
                action=actions.JOURNEY_ENROLMENTS_EXITED,
                object_type="journey",
                object_id=journey.pk,
                details={"reason": ExitReason.STOPPED.value, "ended": running},
            )
    return journey

