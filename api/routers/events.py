"""Care events: what an EHR, CRM or practice-management system reports about a patient's care (appointments,
deliveries, refills, programs), in the vocabulary of consent.events, for journeys to trigger on.

The sending system is the key's `source`: an event is stored once per (source, event_id), so a retry or a replayed
feed stores nothing twice (200 with `duplicate: true`), and the same event_id with another body is refused (409
event_id_conflict). Attributes are codes, never free text. A new event wakes the journeys (issue 14) once it has
committed: journey_advance_task routes it (enrolments, branches, conversions) and runs the steps that are due."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from django.core.exceptions import ValidationError
from django.db import transaction
from ninja import Field, Query, Router, Schema
from ninja.responses import Status
from pydantic import AwareDatetime, StrictInt, StringConstraints

from api.auth import KeyAuth
from api.pagination import DEFAULT_LIMIT, MAX_LIMIT, page
from api.problems import ApiProblem, error_responses
from api.scopes import EVENTS_READ, EVENTS_WRITE
from audit import actions
from audit.services import audit_record
from consent.events import CODE_PATTERN, EVENT_ID_PATTERN, MAX_ATTRIBUTES, TYPE_PATTERN, vocabulary
from consent.models import PatientEvent
from consent.selectors.events import patient_event_list
from consent.services.events import patient_event_record
from journeys.tasks import journey_advance_task

router = Router(tags=["events"])

MAX_ID = 2**63 - 1
BATCH_MAX = 500

AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z_]*$")]
AttributeValue = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=CODE_PATTERN)] | Annotated[
    StrictInt, Field(ge=0, le=2**31 - 1)
]

# Which of the service's error codes is not a 422.
_STATUS = {"event_id_conflict": 409, "nothing_to_revoke": 409}


def problem_from(error: ValidationError, *, field_prefix: str = "") -> ApiProblem:
    """A domain ValidationError as a problem: the first error's stable code is the problem's code, each error names
    its field. The services' messages never repeat a value sent."""
    errors = []
    if hasattr(error, "error_dict"):
        for field, items in error.error_dict.items():
            for item in items:
                errors.append({"field": field_prefix + field, "code": item.code or "invalid", "message": _text(item)})
    else:
        for item in error.error_list:
            errors.append({"field": field_prefix.rstrip(".") or "body", "code": item.code or "invalid",
                           "message": _text(item)})
    code = errors[0]["code"] if errors else "invalid"
    return ApiProblem(
        _STATUS.get(code, 422), code, "The request was refused", errors[0]["message"] if errors else "", errors=errors
    )


def _text(item: ValidationError) -> str:
    message = item.message % item.params if item.params else item.message
    return str(message)[:200]


class EventIn(Schema):
    event_id: str = Field(
        min_length=1, max_length=100, pattern=EVENT_ID_PATTERN,
        description="The sending system's own id of this event; the same id is stored once.",
    )
    type: str = Field(
        min_length=3, max_length=40, pattern=TYPE_PATTERN,
        description="An event type of the vocabulary (GET /api/v1/events/types), e.g. equipment.delivered.",
    )
    patient_id: int = Field(ge=1, le=MAX_ID, description="The patient's id in hipaamail.")
    occurred_at: AwareDatetime = Field(description="When it happened, with a time zone; not in the future.")
    attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict,
        max_length=MAX_ATTRIBUTES,
        description="Codes the type accepts (GET /api/v1/events/types): strings of letters, digits and .-_ "
        "(at most 40), or whole numbers. Never free text.",
    )


class EventOut(Schema):
    id: int
    event_id: str
    source: str
    type: str
    patient_id: int
    occurred_at: datetime
    attributes: dict[str, str | int]
    received_at: datetime


class EventRecordedOut(EventOut):
    duplicate: bool  # true when this event was recorded before (nothing new was stored)


class EventList(Schema):
    items: list[EventOut]
    next_cursor: str | None


class BatchIn(Schema):
    events: list[EventIn] = Field(min_length=1, max_length=BATCH_MAX)


class ItemError(Schema):
    code: str
    field: str
    message: str


class BatchItemOut(Schema):
    index: int
    event_id: str
    status: Literal["created", "duplicate", "rejected"]
    event: EventOut | None
    error: ItemError | None


class BatchOut(Schema):
    created: int
    duplicates: int
    rejected: int
    results: list[BatchItemOut]


class AttributeOut(Schema):
    name: str
    label: str
    description: str
    kind: Literal["code", "choice", "date", "integer"]
    required: bool
    pattern: str | None = None
    choices: list[str] | None = None
    minimum: int | None = None
    maximum: int | None = None


class EventTypeOut(Schema):
    type: str
    label: str
    description: str
    attributes: list[AttributeOut]


class EventTypeList(Schema):
    items: list[EventTypeOut]
    next_cursor: str | None


def event_out(event: PatientEvent) -> dict:
    return {
        "id": event.pk,
        "event_id": event.source_event_id,
        "source": event.source,
        "type": event.type,
        "patient_id": event.patient_id,
        "occurred_at": event.occurred_at,
        "attributes": event.attributes,
        "received_at": event.received_at,
    }


def _viewed(events: list[PatientEvent]) -> None:
    by_patient: dict[int, list[int]] = {}
    for event in events:
        by_patient.setdefault(event.patient_id, []).append(event.pk)
    with transaction.atomic():
        for patient_id, event_ids in sorted(by_patient.items()):
            audit_record(
                actor=None,
                action=actions.PATIENT_VIEWED,
                object_type="patient",
                object_id=patient_id,
                patient_id=patient_id,
                details={"event_ids": event_ids, "via": "api"},
            )


def _journeys_wake() -> None:
    """After commit (the event must be visible to the worker); beat wakes the journeys too, so a lost message only
    delays them."""
    transaction.on_commit(journey_advance_task.delay)


def _record(request, item: EventIn) -> tuple[PatientEvent, bool]:
    return patient_event_record(
        source=request.api_key.source,
        source_event_id=item.event_id,
        patient_id=item.patient_id,
        type=item.type,
        occurred_at=item.occurred_at,
        attributes=dict(item.attributes),
    )


@router.post(
    "",
    response={200: EventRecordedOut, 201: EventRecordedOut, **error_responses()},
    auth=KeyAuth(EVENTS_WRITE),
    summary="Record a care event",
)
def event_record(request, payload: EventIn):
    """Record one event from the key's system. 201 when it is new; 200 with `duplicate: true` when this system
    sent this event_id with the same body before; 409 `event_id_conflict` for the same id with another body.
    Refusals name a field and a code: unknown_event_type, unknown_attribute, bad_attribute_value,
    missing_attribute, occurred_in_future, unknown_patient."""
    try:
        event, created = _record(request, payload)
    except ValidationError as error:
        raise problem_from(error) from None
    if created:
        _journeys_wake()
    return Status(201 if created else 200, event_out(event) | {"duplicate": not created})


@router.post(
    "batch",
    response={200: BatchOut, **error_responses()},
    auth=KeyAuth(EVENTS_WRITE),
    summary="Record up to 500 care events",
)
def event_record_batch(request, payload: BatchIn):
    """Each event is recorded on its own, as POST /events would (one bad event does not stop the others): each
    result says created, duplicate or rejected (with the code). A body that does not fit the schema is refused
    whole (422)."""
    results, counts = [], {"created": 0, "duplicate": 0, "rejected": 0}
    for index, item in enumerate(payload.events):
        try:
            event, created = _record(request, item)
        except ValidationError as error:
            problem = problem_from(error)
            first = problem.errors[0] if problem.errors else {"field": "body", "message": ""}
            results.append({
                "index": index, "event_id": item.event_id, "status": "rejected", "event": None,
                "error": {"code": problem.code, "field": first["field"], "message": first["message"]},
            })
            counts["rejected"] += 1
            continue
        status = "created" if created else "duplicate"
        counts[status] += 1
        results.append({"index": index, "event_id": item.event_id, "status": status, "event": event_out(event),
                        "error": None})
    if counts["created"]:
        _journeys_wake()  # once for the batch: one wake routes every new event
    return {
        "created": counts["created"], "duplicates": counts["duplicate"], "rejected": counts["rejected"],
        "results": results,
    }


@router.get(
    "",
    response={200: EventList, **error_responses()},
    auth=KeyAuth(EVENTS_READ),
    summary="List care events",
)
def event_list(
    request,
    patient_id: int | None = Query(None, ge=1, le=MAX_ID),
    type: str | None = Query(None, min_length=3, max_length=40, pattern=TYPE_PATTERN),
    cursor: str | None = Query(None, max_length=500),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
):
    """Events of every source, most recently received first; filter by patient and by type. Each patient whose
    events a page shows gets an audit event naming them (R-SEC-AUDIT)."""
    rows, next_cursor = page(
        patient_event_list(patient_id=patient_id, type=type), cursor=cursor, limit=limit, descending=True
    )
    _viewed(rows)
    return {"items": [event_out(event) for event in rows], "next_cursor": next_cursor}


@router.get(
    "types",
    response={200: EventTypeList, **error_responses()},
    auth=KeyAuth(EVENTS_WRITE),
    summary="The event vocabulary",
)
def event_type_list(request):
    """Every event type a system may post, with the attributes each accepts (pattern, choices or range, and
    whether it is required). Needs events:write, the scope of the systems that send events."""
    return {"items": vocabulary(), "next_cursor": None}
