"""Enrolment, exactly once (ADR 0016, issue 14 item 4).

Three constraints decide, so that racing intakes, a trigger scan run twice or the same event delivered twice can
never enrol a patient twice: one enrolment per (journey, trigger_key), one running enrolment per (journey,
patient), one per (journey, patient, sequence). Rows are inserted with ON CONFLICT DO NOTHING and the rows that
exist afterwards are read back by trigger key: a candidate that lost a race simply is not enrolled by this pass.

The re-entry rule of the version (Reentry) is applied first; a patient already in the journey is never enrolled
again while that enrolment runs. A held-out share (the control group) is chosen by a hash of the journey, the
patient and the sequence, so that a retried pass picks the same one.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from audit import actions
from audit.services import audit_record
from journeys.models import Enrolment, Journey, JourneyVersion, Reentry


def _held_out(*, journey_id: int, patient_id: int, sequence: int, percent: int) -> bool:
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"holdout:{journey_id}:{patient_id}:{sequence}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent


def enrolments_create(
    *, version: JourneyVersion, candidates: Iterable[tuple[int, str]], now: datetime, trigger: str
) -> list[int]:
    """Enrol each (patient id, trigger key) in `version`'s journey, inside the caller's transaction; returns the
    ids of the enrolments this call created, audited as one event. The version must be its journey's live one
    and the journey active; otherwise nothing is enrolled."""
    journey = version.journey
    if journey.status != Journey.Status.ACTIVE or journey.live_version_id != version.pk:
        return []
    by_patient: dict[int, str] = {}
    for patient_id, key in candidates:
        by_patient.setdefault(patient_id, key)  # one per patient per pass: the first trigger wins
    if not by_patient:
        return []
    keys = list(by_patient.values())
    known_keys = set(
        Enrolment.objects.filter(journey=journey, trigger_key__in=keys).values_list("trigger_key", flat=True)
    )
    history: dict[int, list[tuple[int, str, datetime, datetime | None]]] = defaultdict(list)
    for patient_id, sequence, status, entered_at, ended_at in Enrolment.objects.filter(
        journey=journey, patient_id__in=list(by_patient)
    ).values_list("patient_id", "sequence", "status", "entered_at", "ended_at"):
        history[patient_id].append((sequence, status, entered_at, ended_at))
    rows = []
    for patient_id, key in by_patient.items():
        if key in known_keys:
            continue
        past = history.get(patient_id, [])
        if any(status == Enrolment.Status.ACTIVE for _, status, _, _ in past):
            continue
        if past and version.reentry == Reentry.NEVER:
            continue
        if past and version.reentry == Reentry.AFTER_DAYS:
            latest = max(entered_at for _, _, entered_at, _ in past)
            if latest > now - timedelta(days=version.reentry_days):
                continue
        sequence = max((seq for seq, _, _, _ in past), default=0) + 1
        control = _held_out(
            journey_id=journey.pk, patient_id=patient_id, sequence=sequence, percent=version.holdout_percent
        )
        rows.append(
            Enrolment(
                journey=journey,
                version=version,
                patient_id=patient_id,
                trigger_key=key,
                sequence=sequence,
                control=control,
                # A held-out enrolment takes no step: it waits out the conversion period (or converts).
                step_position=0 if control else 1,
                due_at=now + timedelta(days=version.conversion_days) if control else now,
                entered_at=now,
            )
        )
    if not rows:
        return []
    Enrolment.objects.bulk_create(rows, ignore_conflicts=True)
    created = list(
        Enrolment.objects.filter(
            journey=journey, trigger_key__in=[row.trigger_key for row in rows], entered_at=now
        ).values_list("id", "control")
    )
    if created:
        audit_record(
            actor=None,
            actor_role=actions.SYSTEM,
            action=actions.JOURNEY_ENROLLED,
            object_type="journey",
            object_id=journey.pk,
            details={
                "version": version.number,
                "trigger": trigger,
                "enrolments": sorted(pk for pk, control in created if not control),
                "held_out": sorted(pk for pk, control in created if control),
            },
        )
    return [pk for pk, _ in created]

