"""The event intake (ADR 0016): every care event, whichever way it arrived (the API, a CSV event file), is routed to
the journeys once — it enrols patients in journeys it triggers, wakes enrolments waiting at a branch on it, and
marks conversions — in one transaction with marking the event routed (PatientEvent.journeys_seen_at).

Events are taken FOR UPDATE SKIP LOCKED where `journeys_seen_at` is null, not by a cursor on their id: an event
whose transaction commits after a later one's is still taken, and two workers never route the same event.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit import actions
from audit.services import audit_record
from consent.models import PatientEvent
from journeys.engine.enrol import enrolments_create
from journeys.models import Enrolment, ExitReason, Journey, JourneyStep, JourneyVersion, StepKind, Trigger

INTAKE_BATCH = 500


def conditions_match(conditions: dict, attributes: dict) -> bool:
    """Every coded condition equals the event's attribute of that name (no condition: any event of the type)."""
    return all(attributes.get(name) == value for name, value in (conditions or {}).items())


def events_route(*, batch_size: int = INTAKE_BATCH) -> tuple[int, list[int]]:
    """Route up to `batch_size` unrouted events in one transaction. Returns (events routed, ids of the
    enrolments whose step is now due: new ones and woken branches), for the caller to wake the scanner."""
    now = timezone.now()
    oldest = now - timedelta(days=settings.HIPAAMAIL_JOURNEY_EVENT_MAX_AGE_DAYS)
    with transaction.atomic(durable=True):
        events = list(
            PatientEvent.objects.select_for_update(skip_locked=True)
            .filter(journeys_seen_at__isnull=True)
            .order_by("id")
            .only("id", "patient_id", "type", "occurred_at", "attributes")[:batch_size]
        )
        if not events:
            return 0, []
        due: list[int] = []
        types = {event.type for event in events}
        # 1. Enrolments: live versions of active journeys triggered by these types.
        triggered = defaultdict(list)
        for version in JourneyVersion.objects.select_related("journey").filter(
            status=JourneyVersion.Status.APPROVED,
            journey__status=Journey.Status.ACTIVE,
            trigger=Trigger.EVENT,
            event_type__in=types,
        ):
            for event in events:
                if (
                    event.type == version.event_type
                    and event.occurred_at >= oldest
                    and conditions_match(version.event_conditions, event.attributes)
                ):
                    triggered[version].append((event.patient_id, f"event:{event.pk}"))
        for version, candidates in triggered.items():
            due += enrolments_create(version=version, candidates=candidates, now=now, trigger=Trigger.EVENT)
        due += _branches_wake(events=events, now=now)
        _conversions_record(events=events, now=now)
        PatientEvent.objects.filter(pk__in=[event.pk for event in events]).update(journeys_seen_at=now)
    return len(events), due


def _branches_wake(*, events: list[PatientEvent], now) -> list[int]:
    """Enrolments waiting at a branch on one of these events become due now: the scanner takes the branch."""
    steps = list(
        JourneyStep.objects.filter(
            kind=StepKind.BRANCH,
            branch_event_type__in={event.type for event in events},
            version__enrolments__status=Enrolment.Status.ACTIVE,
        )
        .distinct()
        .values_list("version_id", "position", "branch_event_type", "branch_event_conditions")
    )
    if not steps:
        return []
    by_patient = defaultdict(list)
    for event in events:
        by_patient[event.patient_id].append(event)
    woken: list[int] = []
    for version_id, position, event_type, conditions in steps:
        patients = [
            patient_id
            for patient_id, patient_events in by_patient.items()
            if any(e.type == event_type and conditions_match(conditions, e.attributes) for e in patient_events)
        ]
        if not patients:
            continue
        waiting = Enrolment.objects.filter(
            version_id=version_id,
            step_position=position,
            status=Enrolment.Status.ACTIVE,
            step_started_at__isnull=False,
            patient_id__in=patients,
        )
        ids = list(waiting.values_list("id", flat=True))
        if ids:
            Enrolment.objects.filter(pk__in=ids).update(due_at=now)
            woken += ids
    return woken


def _conversions_record(*, events: list[PatientEvent], now) -> None:
    """An event that is a journey's goal converts the patient's enrolments that began within the conversion period
    before it; one still running (a held-out one included) ends as converted."""
    versions = {
        version.pk: version
        for version in JourneyVersion.objects.filter(
            conversion_event_type__in={event.type for event in events}
        ).only("id", "journey_id", "conversion_event_type", "conversion_days")
    }
    if not versions:
        return
    converted: dict[int, list[int]] = defaultdict(list)
    ended: dict[int, list[int]] = defaultdict(list)
    for event in events:
        matching = [v for v in versions.values() if v.conversion_event_type == event.type]
        for version in matching:
            window = Q(entered_at__lte=event.occurred_at, entered_at__gte=event.occurred_at - timedelta(days=version.conversion_days))
            rows = list(
                Enrolment.objects.filter(window, version=version, patient_id=event.patient_id, converted_at__isnull=True)
                .values_list("id", "status")
            )
            if not rows:
                continue
            Enrolment.objects.filter(pk__in=[pk for pk, _ in rows]).update(converted_at=event.occurred_at)
            running = [pk for pk, status in rows if status == Enrolment.Status.ACTIVE]
            if running:
                Enrolment.objects.filter(pk__in=running).update(
                    status=Enrolment.Status.ENDED, ended_at=now, exit_reason=ExitReason.CONVERTED
                )
            converted[version.journey_id] += [pk for pk, _ in rows]
            ended[version.journey_id] += running
    for journey_id in sorted(converted):
        audit_record(
            actor=None,
            actor_role=actions.SYSTEM,
            action=actions.JOURNEY_ENROLMENTS_EXITED,
            object_type="journey",
            object_id=journey_id,
            details={
                "reason": ExitReason.CONVERTED.value,
                "converted": sorted(converted[journey_id]),
                "ended": sorted(ended[journey_id]),
            },
        )
