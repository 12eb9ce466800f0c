"""Recording a care event an EHR, CRM or practice-management system reports (issue 13).

Stored once per (source, source_event_id): a sender that retries, or replays a day's feed, stores each event once
and gets the stored one back; the same id with another body is refused, because a sender that reuses ids would
otherwise silently lose the second event. Race-safe on PostgreSQL: the unique constraint decides, and the loser of a
race reads the winner's row. Errors carry stable codes and never repeat a value sent (R-NO-PHI-LEAK).
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import actions
from audit.services import audit_record
from consent.events import ATTRIBUTES, EVENT_ID_PATTERN, EVENT_TYPES, MAX_ATTRIBUTES
from consent.models import Patient, PatientEvent

# A sender's clock may run a little ahead of ours; an event further in the future has not happened.
CLOCK_SKEW = timedelta(minutes=5)
_SOURCE = re.compile(r"^[-a-zA-Z0-9_]{1,50}$")


def _error(code: str, message: str, field: str | None = None) -> ValidationError:
    error = ValidationError(message, code=code)
    return ValidationError({field: error}) if field else error


def patient_event_check(*, type: str, occurred_at: datetime, attributes: dict) -> dict:
    """The attributes of an event of this type, checked against the vocabulary (consent.events); a
    ValidationError with a stable code otherwise. Returns the attributes as they are stored."""
    event_type = EVENT_TYPES.get(type) if isinstance(type, str) else None
    if event_type is None:
        raise _error("unknown_event_type", "This event type is not in the vocabulary (GET /api/v1/events/types).", "type")
    if not isinstance(occurred_at, datetime) or timezone.is_naive(occurred_at):
        raise _error("bad_occurred_at", "The time of the event needs a time zone.", "occurred_at")
    try:
        occurred_utc = occurred_at.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _error("bad_occurred_at", "The time of the event is out of range.", "occurred_at") from None
    if occurred_utc > timezone.now() + CLOCK_SKEW:
        raise _error("occurred_in_future", "The event cannot have happened in the future.", "occurred_at")
    if not isinstance(attributes, dict):
        raise _error("bad_attributes", "Attributes are an object of codes.", "attributes")
    if len(attributes) > MAX_ATTRIBUTES:
        raise _error("too_many_attributes", f"An event has at most {MAX_ATTRIBUTES} attributes.", "attributes")
    for name, value in attributes.items():
        if name not in event_type.attributes:
            # The name is a key the sender chose; it is only named when it is one of ours.
            raise _error("unknown_attribute", "An attribute is not one this event type accepts.", "attributes")
        if not ATTRIBUTES[name].accepts(value):
            raise _error("bad_attribute_value", f"The value of {name} is not a valid code.", f"attributes.{name}")
    for name in event_type.required:
        if name not in attributes:
            raise _error("missing_attribute", f"This event type needs {name}.", f"attributes.{name}")
    return dict(attributes)


def _same(event: PatientEvent, *, patient_id: int, type: str, occurred_at: datetime, attributes: dict) -> bool:
    return (
        event.patient_id == patient_id
        and event.type == type
        and event.occurred_at == occurred_at
        and event.attributes == attributes
    )


def _replay(existing: PatientEvent, **body) -> tuple[PatientEvent, bool]:
    if not _same(existing, **body):
        raise _error(
            "event_id_conflict",
            "An event with this id from this source is already recorded with other details; send a new id.",
            "event_id",
        )
    return existing, False


def patient_event_record(
    *,
    source: str,
    source_event_id: str,
    patient_id: int,
    type: str,
    occurred_at: datetime,
    attributes: dict | None = None,
) -> tuple[PatientEvent, bool]:
    """Record a care event reported by `source` (the sending system's slug, from its API key), audited in the same
    transaction. Returns (event, created): created is False when this very event was recorded before."""
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise _error("bad_source", "The sending system's name is not a slug.")
    if not isinstance(source_event_id, str) or not re.fullmatch(EVENT_ID_PATTERN, source_event_id):
        raise _error(
            "bad_event_id", "An event id is 1 to 100 letters, digits and . _ : / - characters.", "event_id"
        )
    attributes = patient_event_check(type=type, occurred_at=occurred_at, attributes=attributes or {})
    body = {"patient_id": patient_id, "type": type, "occurred_at": occurred_at, "attributes": attributes}
    existing = PatientEvent.objects.filter(source=source, source_event_id=source_event_id).first()
    if existing is not None:
        return _replay(existing, **body)
    known = isinstance(patient_id, int) and not isinstance(patient_id, bool) and 0 < patient_id < 2**63
    if not known or not Patient.objects.filter(pk=patient_id).exists():
        raise _error("unknown_patient", "No patient has this id.", "patient_id")
    event = PatientEvent(
        patient_id=patient_id,
        type=type,
        occurred_at=occurred_at,
        attributes=attributes,
        source=source,
        source_event_id=source_event_id,
    )
    event.full_clean(exclude=["patient", "received_at"], validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic(durable=True):
            event.save(force_insert=True)
            audit_record(
                actor=None,
                actor_role=actions.INTEGRATION,
                action=actions.PATIENT_EVENT_RECORDED,
                object_type="patient_event",
                object_id=event.pk,
                patient_id=patient_id,
                details={"type": type, "event_id": event.pk, "source": source},
            )
    except IntegrityError:
        # Another request stored the same (source, event id) between our read and our insert.
        existing = PatientEvent.objects.filter(source=source, source_event_id=source_event_id).first()
        if existing is None:
            raise
        return _replay(existing, **body)
    return event, True
