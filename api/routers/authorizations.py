"""Authorizations: recording those captured elsewhere (a paper form, the EHR's own e-consent) and revocations
received elsewhere, channel "external"; reading a patient's authorizations with their state now, also as FHIR
Consent (R4 or R5) and as a FHIR searchset Bundle.

The signer's name and a representative's authority are stored encrypted (R-SEC-ENCRYPT-REST) and never returned
(R-NO-PHI-LEAK). A revocation takes effect when it commits (R-REVOKE-ANYTIME). Reads are audited with the patient
they concern (R-SEC-AUDIT)."""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Literal
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.utils import timezone
from fhir.resources.bundle import Bundle as BundleR5
from fhir.resources.R4B.bundle import Bundle as BundleR4
from ninja import Field, Query, Router, Schema
from ninja.responses import Status
from pydantic import AwareDatetime

from api.auth import KeyAuth
from api.middleware import API_MAX_BODY_BYTES
from api.pagination import DEFAULT_LIMIT, MAX_LIMIT, page
from api.problems import ApiProblem, error_responses
from api.routers.events import MAX_ID, problem_from
from api.scopes import AUTHORIZATIONS_READ, AUTHORIZATIONS_WRITE
from audit import actions
from audit.services import audit_record
from consent import fhir
from consent.models import Authorization, Patient, Purpose
from consent.selectors.coverage import authorization_covering_list
from consent.selectors.patients import AuthorizationState, authorization_state
from consent.services.external import authorization_external_record, authorization_external_revoke
from consent.services.written import SCAN_MAX_BYTES

router = Router(tags=["authorizations"])

FHIR_CONTENT_TYPE = "application/fhir+json"
EVIDENCE_TYPES = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}
# Base64 of the largest evidence the service takes (10 MB), with its padding, but no more than a request body may
# carry (api.middleware.API_MAX_BODY_BYTES, which the API reads its bodies against) less room for the other fields.
_BODY_ROOM = 64 * 1024
EVIDENCE_BASE64_MAX = min((SCAN_MAX_BYTES + 2) // 3 * 4, (API_MAX_BODY_BYTES - _BODY_ROOM) // 4 * 4)
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
_PURPOSE_CODE = r"^[-a-zA-Z0-9_]+$"

State = Literal["active", "not_yet_effective", "revoked", "defective", "expiry_event", "expired"]
FhirVersion = Literal["R4", "R5"]


class EvidenceIn(Schema):
    content_type: Literal["application/pdf", "image/png", "image/jpeg"]
    data: str = Field(
        min_length=1,
        max_length=EVIDENCE_BASE64_MAX,
        description="The file, base64-encoded (RFC 4648, with padding): a PDF, PNG or JPEG of at most 10 MB once "
        "decoded, and no longer than maxLength here. Checked by its first bytes, never by the declared type alone.",
        json_schema_extra={"contentEncoding": "base64"},
    )


class AuthorizationIn(Schema):
    patient_id: int = Field(ge=1, le=MAX_ID)
    purpose: str = Field(min_length=1, max_length=50, pattern=_PURPOSE_CODE, description="The purpose's code.")
    form_version: int = Field(ge=1, le=2**31 - 1, description="A published version number of the purpose's form.")
    signed_at: AwareDatetime = Field(description="When it was signed, with a time zone; not in the future.")
    signer_name: str = Field(
        min_length=1, max_length=200, pattern=_NO_CONTROL,
        description="The name as signed (HIPAA, 45 CFR 164.508(c)(1)(vi): the signature). Stored encrypted; never returned.",
    )
    signed_by_representative: bool = False
    representative_authority: str = Field(
        "", max_length=500, pattern=_NO_CONTROL,
        description="How a personal representative may act for the patient; required when they signed. Never returned.",
    )
    evidence: EvidenceIn


class RevocationIn(Schema):
    patient_id: int = Field(ge=1, le=MAX_ID)
    purpose: str = Field(min_length=1, max_length=50, pattern=_PURPOSE_CODE)
    evidence: EvidenceIn | None = Field(None, description="The revocation letter, if it came in writing.")


class AuthorizationOut(Schema):
    id: int
    patient_id: int
    purpose: str
    form_version: int | None
    channel: str  # web, written, import or external
    signed_at: datetime
    expires_at: datetime | None
    expiry_event: str
    signed_by_representative: bool
    has_evidence: bool
    revoked_at: datetime | None
    state: State


class AuthorizationList(Schema):
    items: list[AuthorizationOut]
    next_cursor: str | None


class RevocationOut(Schema):
    patient_id: int
    purpose: str
    authorization_ids: list[int]
    revoked_at: datetime


def _fhir_responses(resource_type: str, description: str) -> dict:
    # The FHIR answers are application/fhir+json, not application/json: declared here, since ninja's `response=`
    # would say application/json. The schema is loose; fhir.resources validates each resource before it leaves.
    return {
        "responses": {
            200: {
                "description": description,
                "content": {
                    FHIR_CONTENT_TYPE: {
                        "schema": {
                            "type": "object",
                            "required": ["resourceType"],
                            "properties": {"resourceType": {"type": "string", "enum": [resource_type]}},
                            "additionalProperties": True,
                        }
                    }
                },
            }
        }
    }


def _evidence(evidence: EvidenceIn | None) -> tuple[bytes | None, str]:
    if evidence is None:
        return None, ""
    try:
        data = base64.b64decode(evidence.data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiProblem(
            422, "evidence_not_base64", "The evidence is not valid base64",
            errors=[{"field": "evidence.data", "code": "evidence_not_base64", "message": "Not valid base64."}],
        ) from None
    return data, EVIDENCE_TYPES[evidence.content_type]


def _unknown(field: str, code: str, message: str) -> ApiProblem:
    return ApiProblem(422, code, "The request was refused", message,
                      errors=[{"field": field, "code": code, "message": message}])


def _patient(patient_id: int) -> Patient:
    patient = Patient.objects.filter(pk=patient_id).first()
    if patient is None:
        raise _unknown("patient_id", "unknown_patient", "No patient has this id.")
    return patient


def _purpose(code: str) -> Purpose:
    purpose = Purpose.objects.filter(code=code).first()
    if purpose is None:
        raise _unknown("purpose", "unknown_purpose", "No purpose has this code.")
    return purpose


def _states(authorizations: list[Authorization]) -> dict[int, str]:
    """Each one's state now: active exactly when the one predicate covers it (asked once per patient and purpose),
    else why not (consent.selectors.patients.authorization_state)."""
    covering: set[int] = set()
    for patient_id, purpose_id in {(a.patient_id, a.purpose_id) for a in authorizations}:
        covering |= set(
            authorization_covering_list(purpose_id=purpose_id, patient_ids=[patient_id]).values_list("id", flat=True)
        )
    return {
        a.pk: AuthorizationState.ACTIVE if a.pk in covering else authorization_state(a) for a in authorizations
    }


def _queryset():
    return Authorization.objects.select_related("purpose", "form_version", "revocation", "patient")


def authorization_out(authorization: Authorization, state: str) -> dict:
    revocation = getattr(authorization, "revocation", None)
    return {
        "id": authorization.pk,
        "patient_id": authorization.patient_id,
        "purpose": authorization.purpose.code,
        "form_version": authorization.form_version.version if authorization.form_version_id else None,
        "channel": authorization.channel,
        "signed_at": authorization.signed_at,
        "expires_at": authorization.expires_at,
        "expiry_event": authorization.expiry_event,
        "signed_by_representative": authorization.signed_by_representative,
        "has_evidence": bool(authorization.scan or authorization.pdf),
        "revoked_at": revocation.revoked_at if revocation is not None else None,
        "state": state,
    }


def _viewed(patient_id: int, authorization_ids: list[int]) -> None:
    audit_record(
        actor=None,
        action=actions.PATIENT_VIEWED,
        object_type="patient",
        object_id=patient_id,
        patient_id=patient_id,
        details={"authorization_ids": authorization_ids, "via": "api"},
    )


def _authorization_or_404(authorization_id: int) -> Authorization:
    authorization = _queryset().filter(pk=authorization_id).first() if 0 < authorization_id <= MAX_ID else None
    if authorization is None:
        raise ApiProblem(404, "not_found", "Not found", "No authorization has this id.")
    return authorization


def _fhir_version(version: str) -> str:
    return fhir.R4 if version == "R4" else fhir.R5


@router.post(
    "",
    response={201: AuthorizationOut, **error_responses()},
    auth=KeyAuth(AUTHORIZATIONS_WRITE),
    summary="Record an authorization signed elsewhere",
)
def authorization_record(request, payload: AuthorizationIn):
    """An authorization the patient (or their personal representative) signed outside hipaamail, on a published
    version of the purpose's form, with the evidence of it (a PDF, PNG or JPEG scan or the EHR's own copy). Its
    text and expiry are that form version's. Refusals: unknown_patient, unknown_purpose, form_version_not_published,
    signed_in_future, form_version_ended, representative_authority_required, evidence_not_base64, evidence_type,
    evidence_type_mismatch, evidence_too_large, evidence_empty."""
    patient, purpose = _patient(payload.patient_id), _purpose(payload.purpose)
    evidence, kind = _evidence(payload.evidence)
    try:
        authorization = authorization_external_record(
            patient=patient,
            purpose=purpose,
            form_version=payload.form_version,
            signed_at=payload.signed_at,
            signer_name=payload.signer_name,
            signed_by_representative=payload.signed_by_representative,
            representative_authority=payload.representative_authority,
            evidence=evidence,
            evidence_kind=kind,
        )
    except ValidationError as error:
        raise problem_from(error) from None
    authorization = _queryset().get(pk=authorization.pk)
    return Status(201, authorization_out(authorization, _states([authorization])[authorization.pk]))


@router.post(
    "revocations",
    response={201: RevocationOut, **error_responses()},
    auth=KeyAuth(AUTHORIZATIONS_WRITE),
    summary="Record a revocation received elsewhere",
)
def authorization_revocation_record(request, payload: RevocationIn):
    """The patient revoked their authorization for a purpose elsewhere (a letter, the EHR's portal): every
    unrevoked authorization of theirs for it ends when this commits; from then on no message for the purpose
    goes to them. 409 nothing_to_revoke when there is none."""
    patient, purpose = _patient(payload.patient_id), _purpose(payload.purpose)
    evidence, kind = _evidence(payload.evidence)
    try:
        revocations = authorization_external_revoke(
            patient_id=patient.pk, purpose_id=purpose.pk, evidence=evidence, evidence_kind=kind
        )
    except ValidationError as error:
        raise problem_from(error) from None
    return Status(201, {
        "patient_id": patient.pk,
        "purpose": purpose.code,
        "authorization_ids": sorted(revocation.authorization_id for revocation in revocations),
        "revoked_at": max(revocation.revoked_at for revocation in revocations),
    })


@router.get(
    "",
    response={200: AuthorizationList, **error_responses()},
    auth=KeyAuth(AUTHORIZATIONS_READ),
    summary="A patient's authorizations",
)
def authorization_list(
    request,
    patient_id: int = Query(..., ge=1, le=MAX_ID),
    cursor: str | None = Query(None, max_length=500),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
):
    """Every authorization of the patient, newest first, with its state now (active, not_yet_effective, revoked,
    defective, expiry_event, expired)."""
    patient = Patient.objects.filter(pk=patient_id).only("id").first()
    if patient is None:
        raise ApiProblem(404, "not_found", "Not found", "No patient has this id.")
    rows, next_cursor = page(_queryset().filter(patient_id=patient.pk), cursor=cursor, limit=limit, descending=True)
    states = _states(rows)
    _viewed(patient.pk, [row.pk for row in rows])
    return {"items": [authorization_out(row, states[row.pk]) for row in rows], "next_cursor": next_cursor}


@router.get(
    "fhir",
    response=error_responses(),
    auth=KeyAuth(AUTHORIZATIONS_READ),
    summary="A patient's authorizations as a FHIR Bundle",
    openapi_extra=_fhir_responses("Bundle", "A FHIR searchset Bundle of Consent resources"),
)
def authorization_fhir_bundle(
    request,
    patient_id: int = Query(..., ge=1, le=MAX_ID),
    version: FhirVersion = "R5",
    cursor: str | None = Query(None, max_length=500),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
):
    """The patient's authorizations as a `searchset` Bundle of Consent resources (R4 or R5 form), newest first;
    `total` counts them all, a `next` link carries the cursor of the next page."""
    patient = Patient.objects.filter(pk=patient_id).only("id").first()
    if patient is None:
        raise ApiProblem(404, "not_found", "Not found", "No patient has this id.")
    form = _fhir_version(version)
    queryset = _queryset().filter(patient_id=patient.pk)
    rows, next_cursor = page(queryset, cursor=cursor, limit=limit, descending=True)
    base = settings.SITE_URL.rstrip("/") + "/api/v1/authorizations"
    query = {"patient_id": patient.pk, "version": version}
    bundle: dict = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": timezone.now().isoformat(),
        "total": queryset.count(),
        "link": [{"relation": "self", "url": f"{base}/fhir?{urlencode(query)}"}],
        "entry": [
            {
                "fullUrl": f"{base}/{row.pk}/fhir",
                "resource": fhir.authorization_to_fhir(row, version=form),
                "search": {"mode": "match"},
            }
            for row in rows
        ],
    }
    if next_cursor:
        bundle["link"].append(
            {"relation": "next", "url": f"{base}/fhir?{urlencode(query | {'cursor': next_cursor, 'limit': limit})}"}
        )
    if not bundle["entry"]:
        del bundle["entry"]
    # Checked like every resource consent.fhir builds, before it leaves.
    (BundleR4 if form == fhir.R4 else BundleR5).model_validate(bundle)
    for row in rows:
        audit_record(
            actor=None,
            action=actions.AUTHORIZATION_FHIR_EXPORTED,
            object_type="authorization",
            object_id=row.pk,
            patient_id=row.patient_id,
            details={"version": form, "via": "api"},
        )
    return HttpResponse(json.dumps(bundle), content_type=FHIR_CONTENT_TYPE)


@router.get(
    "{authorization_id}",
    response={200: AuthorizationOut, **error_responses()},
    auth=KeyAuth(AUTHORIZATIONS_READ),
    summary="An authorization",
)
def authorization_get(request, authorization_id: int):
    """One authorization with its state now."""
    authorization = _authorization_or_404(authorization_id)
    _viewed(authorization.patient_id, [authorization.pk])
    return authorization_out(authorization, _states([authorization])[authorization.pk])


@router.get(
    "{authorization_id}/fhir",
    response=error_responses(),
    auth=KeyAuth(AUTHORIZATIONS_READ),
    summary="An authorization as FHIR Consent",
    openapi_extra=_fhir_responses("Consent", "A FHIR Consent resource"),
)
def authorization_fhir(request, authorization_id: int, version: FhirVersion = "R5"):
    """The authorization as a FHIR Consent in R4 form (as R4B, which has the same Consent) or R5 form."""
    authorization = _authorization_or_404(authorization_id)
    form = _fhir_version(version)
    resource = fhir.authorization_to_fhir(authorization, version=form)
    audit_record(
        actor=None,
        action=actions.AUTHORIZATION_FHIR_EXPORTED,
        object_type="authorization",
        object_id=authorization.pk,
        patient_id=authorization.patient_id,
        details={"version": form, "via": "api"},
    )
    return HttpResponse(json.dumps(resource), content_type=FHIR_CONTENT_TYPE)
