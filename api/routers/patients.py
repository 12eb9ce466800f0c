"""Patients: the EHR's nightly sync (a batch upsert keyed by the clinic's record number), and finding a patient by
record number or email (POSTed, never in the URL) or by the opaque id the API gives out.

Minimum necessary (R-MIN-NECESSARY): answers hold the patient's id and coded attributes only; never a name, an
email, a phone number, an address or a birth date. Errors name fields and codes, never a value (R-NO-PHI-LEAK)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from ninja import Field, Router, Schema
from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api.auth import KeyAuth
from api.problems import ApiProblem, error_responses
from api.scopes import PATIENTS_READ, PATIENTS_WRITE
from audit import actions
from audit.services import audit_record
from consent import crypto
from consent.models import Patient
from consent.patient_import.validate import MAX_CODES, MAX_LENGTHS, PROGRAM_CODE_MAX_LENGTH
from consent.services.patients import MAX_UPSERT_ITEMS, patients_upsert

router = Router(tags=["patients"])

# No control characters (PostgreSQL refuses NUL; none belongs in a name, an address or an id).
_TEXT = r"^[^\x00-\x1f\x7f]*$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
Code = Annotated[str, StringConstraints(max_length=PROGRAM_CODE_MAX_LENGTH, pattern=r"^[^\x00-\x1f\x7f;]*$")]


def _text(name: str, **extra):
    return Field(None, max_length=MAX_LENGTHS[name], pattern=_TEXT, **extra)


# The batch's schemas are plain pydantic models, not ninja Schemas: a Schema wraps every object it validates for
# attribute access (its root validator), which cost about 0.1 s per batch of 1,000 items in and out (measured
# with cProfile in bench/api_patients_upsert.py's setting). The OpenAPI schema is the same.


class PatientIn(BaseModel):
    """One patient of a batch, keyed by `external_id`. A field omitted (or null) is left as it is on an update;
    `condition_codes` and `program_codes` given replace the patient's. A new patient needs `email` and
    `full_name`. Values are checked as the CSV import checks them: an item that fails is rejected on its own."""

    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(
        ...,
        min_length=1,
        max_length=MAX_LENGTHS["external_id"],
        pattern=r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$",
        description="The clinic's record number (MRN): the key of the upsert.",
    )
    email: str | None = Field(None, max_length=MAX_LENGTHS["email"], pattern=_TEXT)
    full_name: str | None = _text("full_name")
    phone: str | None = _text("phone")
    street_address: str | None = _text("street_address")
    birth_date: str | None = Field(
        None, max_length=10, pattern=r"^(|[0-9]{4}-[0-9]{2}-[0-9]{2})$", description="YYYY-MM-DD, or empty to clear"
    )
    sex: str | None = Field(None, max_length=1, pattern=r"^[FMXfmx]?$", description="F, M or X, or empty")
    postal_code: str | None = Field(None, max_length=10, pattern=_TEXT, description="US ZIP: 12345 or 12345-6789")
    state: str | None = Field(None, max_length=2, pattern=_TEXT, description="two-letter state code")
    last_visit: str | None = Field(
        None, max_length=10, pattern=r"^(|[0-9]{4}-[0-9]{2}-[0-9]{2})$", description="YYYY-MM-DD, or empty to clear"
    )
    refill_due: str | None = Field(
        None,
        max_length=10,
        pattern=r"^(|[0-9]{4}-[0-9]{2}-[0-9]{2})$",
        description="When the next refill or supply replacement is due, YYYY-MM-DD (future dates allowed, up to ten "
        "years ahead), or empty to clear",
    )
    time_zone: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+/-]*$",
        description="The patient's IANA time zone (America/Chicago), for journey send times and quiet hours; empty: "
        "the organisation's",
    )
    language: Literal["en", "es"] | None = Field(
        None,
        description="The language the patient reads their mail, the portal and their forms in: en (English) or es "
        "(Spanish). Omitted: English for a new patient, unchanged for an existing one",
    )
    condition_codes: list[Code] | None = Field(
        None, max_length=MAX_CODES, description="ICD-10 codes such as E11 or G47.33; given = replaced"
    )
    program_codes: list[Code] | None = Field(
        None, max_length=MAX_CODES, description="program codes such as DPP; given = replaced"
    )


class UpsertIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={})

    items: list[PatientIn] = Field(..., json_schema_extra={"minItems": 1, "maxItems": MAX_UPSERT_ITEMS})

    @field_validator("items", mode="before")
    @classmethod
    def _batch_size(cls, value):
        if isinstance(value, list) and not 1 <= len(value) <= MAX_UPSERT_ITEMS:
            raise PydanticCustomError("batch_size", "A batch holds 1 to 1000 items")
        return value


class ItemError(BaseModel):
    field: str
    code: str
    message: str


class ItemOut(BaseModel):
    index: int
    status: Literal["created", "updated", "unchanged", "rejected"]
    patient_id: int | None
    errors: list[ItemError]


class UpsertOut(BaseModel):
    created: int
    updated: int
    unchanged: int
    rejected: int
    items: list[ItemOut]


class SearchIn(Schema):
    """Exactly one of `external_id` or `email`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1, "maxProperties": 1})

    external_id: str = Field(None, min_length=1, max_length=MAX_LENGTHS["external_id"], pattern=_TEXT)
    email: str = Field(None, min_length=1, max_length=MAX_LENGTHS["email"], pattern=_TEXT)

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [name for name in ("external_id", "email") if getattr(self, name) is not None]
        if len(given) != 1:
            raise PydanticCustomError("search_key", "Send exactly one of external_id or email")
        return self


class PatientOut(Schema):
    id: int
    external_id: str
    birth_year: int | None
    sex: str
    postal_code: str
    state: str
    last_visit: date | None
    refill_due: date | None
    time_zone: str = Field(description="The patient's IANA time zone name; empty: the organisation's")
    language: Literal["en", "es"] = Field(description="The language of the patient's mail, portal and forms")
    condition_codes: list[str]
    program_codes: list[str]
    created_at: datetime


def patient_out(patient: Patient) -> dict:
    return {
        "id": patient.pk,
        "external_id": patient.external_id,
        "birth_year": patient.birth_year,
        "sex": patient.sex,
        "postal_code": patient.postal_code,
        "state": patient.state,
        "last_visit": patient.last_visit,
        "refill_due": patient.refill_due,
        "time_zone": patient.time_zone,
        "language": patient.language,
        "condition_codes": sorted(patient.conditions.values_list("code", flat=True)),
        "program_codes": sorted(patient.programs.values_list("code", flat=True)),
        "created_at": patient.created_at,
    }


def _not_found() -> ApiProblem:
    return ApiProblem(404, "not_found", "Not found", "No patient matches, or not reachable with this key.")


@router.post(
    "upsert",
    response={200: UpsertOut, **error_responses()},
    auth=KeyAuth(PATIENTS_WRITE),
    summary="Create or update patients (batch)",
)
def patient_upsert(request, payload: UpsertIn):
    """Up to 1,000 patients keyed by `external_id`: each is created, updated, left unchanged or rejected (with
    its errors). The valid ones are written together; a rejected item changes nothing. An `external_id` or
    `email` repeated in the batch is rejected after its first item."""
    items = [item.model_dump(exclude_none=True) for item in payload.items]
    try:
        results = patients_upsert(items=items, source="api")
    except IntegrityError:
        # Another batch created one of these patients meanwhile: nothing of this one was written.
        raise ApiProblem(
            409,
            "conflict",
            "Another request changed these patients at the same time",
            "Nothing was written; retry the batch with a new Idempotency-Key.",
        ) from None
    except DjangoValidationError:
        raise ApiProblem(422, "batch_size", "A batch holds 1 to 1,000 items") from None
    counts = {status: 0 for status in ("created", "updated", "unchanged", "rejected")}
    for result in results:
        counts[result.status] += 1
    return {
        **counts,
        "items": [
            {"index": r.index, "status": r.status, "patient_id": r.patient_id, "errors": r.errors} for r in results
        ],
    }


@router.post(
    "search",
    response={200: PatientOut, **error_responses()},
    auth=KeyAuth(PATIENTS_READ),
    summary="Find a patient by record number or email",
)
def patient_search(request, payload: SearchIn):
    """By `external_id` or by `email` (exactly one), matched by keyed digest; in the body so that no identifier
    is ever in a URL or a log. Answers the patient's id and coded attributes."""
    if payload.external_id is not None:
        kind, lookup = "external_id", {"external_id_digest": crypto.lookup_digest(payload.external_id)}
    else:
        kind, lookup = "email", {"email_digest": crypto.lookup_digest(payload.email)}
    patient = Patient.objects.filter(**lookup).first()
    audit_record(
        action=actions.PATIENT_SEARCHED,
        object_type="patient",
        object_id=patient.pk if patient else "",
        patient_id=patient.pk if patient else None,
        details={"by": kind, "found": patient is not None},
    )
    if patient is None:
        raise _not_found()
    return patient_out(patient)


@router.get(
    "{patient_id}",
    response={200: PatientOut, **error_responses()},
    auth=KeyAuth(PATIENTS_READ),
    summary="A patient by id",
)
def patient_get(request, patient_id: int):
    """The patient's id and coded attributes, by the id an upsert or a search gave."""
    patient = Patient.objects.filter(pk=patient_id).first() if 0 < patient_id < 2**63 else None
    if patient is None:
        raise _not_found()
    audit_record(
        action=actions.PATIENT_VIEWED,
        object_type="patient",
        object_id=patient.pk,
        patient_id=patient.pk,
        details={"via": "api"},
    )
    return patient_out(patient)
