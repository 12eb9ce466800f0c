"""The scans that enrol on a date, on entering a segment and on an authorization nearing its expiry (ADR 0016).
Each runs in batches of patients, one transaction each; the trigger keys make a scan that runs twice (or two that
race) enrol nobody twice (journeys.engine.enrol).

- Date: a patient enters on the day `date_field + offset_days` falls on in the organisation's time zone, or up to
  two days later when a scan was missed; once per date value ("date:<field>:<patient>:<date>").
- Segment: every member of the segment when the journey is approved and whoever joins it later, once per version
  ("segment:<version>:<patient>").
- Expiry: each authorization for the purpose that still covers and expires within `days_before_expiry` days,
  once per authorization ("expiry:<authorization>"): a renewal invitation.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from campaigns.segments import segment_patient_ids
from consent.models import Patient
from consent.selectors.coverage import authorization_covering_list
from journeys.engine.enrol import enrolments_create
from journeys.models import Enrolment, Journey, JourneyVersion, Trigger

BATCH = 1000
# A date trigger still enrols this many days after its day (a scan missed during an outage).
DATE_GRACE_DAYS = 2


def _live(kind: str) -> list[JourneyVersion]:
    return list(
        JourneyVersion.objects.select_related("journey", "journey__purpose").filter(
            status=JourneyVersion.Status.APPROVED, journey__status=Journey.Status.ACTIVE, trigger=kind
        )
    )


def _chunks(items: list, size: int = BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _enrol_in_batches(version: JourneyVersion, candidates: list[tuple[int, str]], *, trigger: str) -> list[int]:
    created: list[int] = []
    for chunk in _chunks(candidates):
        with transaction.atomic(durable=True):
            # Re-read under lock: a pause or a new version committed since the scan began stops it here.
            journey = Journey.objects.select_for_update().get(pk=version.journey_id)
            version.journey = journey
            created += enrolments_create(version=version, candidates=chunk, now=timezone.now(), trigger=trigger)
    return created


def _not_yet(version: JourneyVersion, candidates: list[tuple[int, str]]) -> list[tuple[int, str]]:
    known = set(
        Enrolment.objects.filter(journey_id=version.journey_id, trigger_key__in=[key for _, key in candidates])
        .values_list("trigger_key", flat=True)
    )
    return [(pid, key) for pid, key in candidates if key not in known]


def date_triggers_scan() -> list[int]:
    today = timezone.localdate()
    created: list[int] = []
    for version in _live(Trigger.DATE):
        field = version.date_field
        latest = today - timedelta(days=version.offset_days)
        rows = Patient.objects.filter(
            **{f"{field}__lte": latest, f"{field}__gte": latest - timedelta(days=DATE_GRACE_DAYS)}
        ).values_list("id", field)
        candidates = [(pid, f"date:{field}:{pid}:{value.isoformat()}") for pid, value in rows.iterator()]
        for chunk in _chunks(candidates, 10 * BATCH):
            created += _enrol_in_batches(version, _not_yet(version, chunk), trigger=Trigger.DATE)
    return created


def segment_triggers_scan() -> list[int]:
    created: list[int] = []
    for version in _live(Trigger.SEGMENT):
        members = segment_patient_ids(segment_id=version.segment_id).values_list("id", flat=True)
        candidates = [(pid, f"segment:{version.pk}:{pid}") for pid in members.iterator()]
        for chunk in _chunks(candidates, 10 * BATCH):
            created += _enrol_in_batches(version, _not_yet(version, chunk), trigger=Trigger.SEGMENT)
    return created


def expiry_triggers_scan() -> list[int]:
    created: list[int] = []
    now = timezone.now()
    for version in _live(Trigger.EXPIRY):
        rows = (
            authorization_covering_list(purpose_id=version.journey.purpose_id)
            .filter(expires_at__isnull=False, expires_at__lte=now + timedelta(days=version.days_before_expiry))
            .order_by("id")
            .values_list("patient_id", "id")
        )
        candidates = [(pid, f"expiry:{authorization_id}") for pid, authorization_id in rows.iterator()]
        for chunk in _chunks(candidates, 10 * BATCH):
            created += _enrol_in_batches(version, _not_yet(version, chunk), trigger=Trigger.EXPIRY)
    return created


def triggers_scan() -> list[int]:
    """Every scan; returns the ids of the enrolments created."""
    return date_triggers_scan() + segment_triggers_scan() + expiry_triggers_scan()
