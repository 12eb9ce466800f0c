"""Authorizations and revocations captured elsewhere (a paper form scanned at the front desk, the EHR's own
e-consent) and recorded through the integration API (issue 13), channel EXTERNAL.

The signature is recorded against a published form version of the purpose, so the stored text and its hash are that
version's (R-AUTH-COPY, R-AUTH-IMMUTABLE: an older published version still counts for those who signed it), and
its expiry follows that version's rule (consent.services.signing.form_expiry_for, the one place for it). The
evidence (a PDF or an image of what was signed) is required, checked by its first bytes and stored under a random
name before the row that names it. Both go through the core services, which audit and lock as ADR 0001 says.
"""
from __future__ import annotations

from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from consent.documents import form_text, text_hash
from consent.models import Authorization, AuthorizationForm, Patient, Purpose, Revocation
from consent.services.authorizations import authorization_grant, authorizations_revoke_locked
from consent.services.events import CLOCK_SKEW
from consent.services.signing import form_expiry_for
from consent.services.written import scan_kind, scan_store

EVIDENCE_KINDS = ("pdf", "png", "jpg")
_EVIDENCE_ERRORS = {
    "scan_required": ("evidence_required", "Attach the evidence of the signature (a PDF, PNG or JPEG)."),
    "scan_empty": ("evidence_empty", "The evidence is empty."),
    "scan_too_large": ("evidence_too_large", "The evidence is larger than 10 MB."),
    "scan_type": ("evidence_type", "The evidence must be a PDF, PNG or JPEG file."),
}


def _error(code: str, message: str, field: str | None = None) -> ValidationError:
    error = ValidationError(message, code=code)
    return ValidationError({field: error}) if field else error


def evidence_file(*, evidence: bytes | None, evidence_kind: str) -> ContentFile:
    """The evidence as a file, checked by its first bytes (consent.services.written.scan_kind) and against the kind the
    sender declared; a ValidationError with an evidence_* code otherwise."""
    if evidence_kind not in EVIDENCE_KINDS:
        raise _error("evidence_type", "The evidence must be a PDF, PNG or JPEG file.", "evidence")
    upload = ContentFile(evidence or b"", name=f"evidence.{evidence_kind}")
    try:
        kind = scan_kind(upload if evidence is not None else None)
    except ValidationError as error:
        code, message = _EVIDENCE_ERRORS.get(error.code, ("evidence_type", "The evidence is not accepted."))
        raise _error(code, message, "evidence") from None
    if kind != evidence_kind:
        raise _error("evidence_type_mismatch", "The evidence is not of the type it is declared as.", "evidence")
    return upload


def _instant_check(moment: datetime, field: str) -> None:
    if not isinstance(moment, datetime) or timezone.is_naive(moment):
        raise _error("bad_signed_at", "The signing time needs a time zone.", field)
    try:
        moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _error("bad_signed_at", "The signing time is out of range.", field) from None
    if moment > timezone.now() + CLOCK_SKEW:
        raise _error("signed_in_future", "The signing time cannot be in the future.", field)


def authorization_external_record(
    *,
    patient: Patient,
    purpose: Purpose,
    form_version: int,
    signed_at: datetime,
    signer_name: str,
    signed_by_representative: bool = False,
    representative_authority: str = "",
    evidence: bytes,
    evidence_kind: str,
) -> Authorization:
    """Record an authorization signed elsewhere on version `form_version` of the purpose's form, with the evidence
    of the signature; attributed to the calling API key by the audit context (actor None)."""
    signer_name = " ".join((signer_name or "").split())
    representative_authority = (representative_authority or "").strip()
    if not signer_name:
        raise _error("signer_name_required", "Give the name as signed (HIPAA, 45 CFR 164.508(c)(1)(vi)).", "signer_name")
    if signed_by_representative and not representative_authority:
        raise _error(
            "representative_authority_required",
            # R-AUTH-CORE-6
            "A personal representative's authority to act for the patient is needed "
            "(HIPAA, 45 CFR 164.508(c)(1)(vi)).",
            "representative_authority",
        )
    form = AuthorizationForm.objects.filter(
        purpose=purpose, version=form_version, status=AuthorizationForm.Status.PUBLISHED
    ).first()
    if form is None:
        raise _error(
            "form_version_not_published", "This purpose has no published form version with this number.",
            "form_version",
        )
    _instant_check(signed_at, "signed_at")
    expires_at, expiry_event = form_expiry_for(form=form, signed_at=signed_at)
    if expires_at is not None and expires_at <= signed_at:
        raise _error("form_version_ended", "This form version had already ended when it was signed.", "signed_at")
    upload = evidence_file(evidence=evidence, evidence_kind=evidence_kind)  # before anything is stored
    document_text = form_text(form)
    with transaction.atomic(durable=True):
        return authorization_grant(
            actor=None,
            patient=patient,
            purpose=purpose,
            form_version=form,
            signed_at=signed_at,
            expires_at=expires_at,
            expiry_event=expiry_event,
            channel=Authorization.Channel.EXTERNAL,
            document_text=document_text,
            text_hash=text_hash(document_text),
            signature_name=signer_name,
            signed_by_representative=signed_by_representative,
            representative_authority=representative_authority if signed_by_representative else "",
            scan_name=scan_store(upload),
        )


def authorization_external_revoke(
    *, patient_id: int, purpose_id: int, evidence: bytes | None = None, evidence_kind: str = ""
) -> list[Revocation]:
    """Record a revocation received elsewhere (R-REVOKE-ANYTIME, R-REVOKE-WRITTEN: the sender keeps the writing;
    its scan may come along). Like every revocation it ends each unrevoked authorization of the patient for the
    purpose, effective when this commits, with the rows locked as ADR 0001 says. Nothing left to revoke is an
    error (nothing_to_revoke), also when a concurrent revocation got there first."""
    upload = evidence_file(evidence=evidence, evidence_kind=evidence_kind) if evidence is not None else None
    with transaction.atomic(durable=True):
        ids = list(
            Authorization.objects.filter(
                patient_id=patient_id, purpose_id=purpose_id, revocation__isnull=True
            ).values_list("id", flat=True)
        )
        if not ids:
            raise _error("nothing_to_revoke", "The patient has no unrevoked authorization for this purpose.")
        revocations = authorizations_revoke_locked(
            actor=None,
            authorization_ids=ids,
            channel=Revocation.Channel.EXTERNAL,
            scan_name=scan_store(upload) if upload is not None else "",
        )
        if not revocations:
            raise _error("nothing_to_revoke", "The patient has no unrevoked authorization for this purpose.")
    return revocations
