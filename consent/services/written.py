"""Authorizations and revocations received on paper and recorded by staff (R-REVOKE-WRITTEN, issue 4 item 6).

The scan is part of the evidence row and the rows are append-only (a database trigger refuses updates), so
the row is inserted with its scan, through the core services (which lock as ADR 0001 says).
"""
import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from consent.models import Authorization, AuthorizationForm, Patient, Purpose, Revocation
from consent.services.authorizations import authorization_grant, authorizations_revoke_locked

# What a scan may be, by its first bytes (never by the name or the type the browser claims).
SCAN_MAX_BYTES = 10 * 1024 * 1024
_SCAN_SIGNATURES = {b"%PDF-": "pdf", b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpg"}


def scan_kind(upload: File) -> str:
    """The file kind of an uploaded scan ("pdf", "png" or "jpg"), or a ValidationError that says what is
    allowed. Never echoes the file's name, which may hold a patient's name (R-NO-PHI-LEAK)."""
    if upload is None:
        raise ValidationError(gettext("Attach the scan of the signed paper."), code="scan_required")
    if upload.size > SCAN_MAX_BYTES:
        raise ValidationError(gettext("The scan is larger than 10 MB. Scan at a lower resolution."), code="scan_too_large")
    if upload.size == 0:
        raise ValidationError(gettext("The scan is empty."), code="scan_empty")
    upload.seek(0)
    head = upload.read(8)
    upload.seek(0)
    for signature, kind in _SCAN_SIGNATURES.items():
        if head.startswith(signature):
            return kind
    raise ValidationError(gettext("The scan must be a PDF, PNG or JPEG file."), code="scan_type")


def scan_store(upload: File, *, folder: str = "scans") -> str:
    """Save a checked scan under a random name (the uploaded name may hold PHI) and return the stored name."""
    kind = scan_kind(upload)
    return default_storage.save(f"{folder}/{uuid.uuid4().hex}.{kind}", upload)


def authorization_written_record(
    *,
    actor,
    patient: Patient,
    purpose: Purpose,
    signed_on: datetime,
    expires_at: datetime | None,
    expiry_event: str = "",
    signature_name: str,
    scan: File,
    form_version: AuthorizationForm | None = None,
    document_text: str = "",
    text_hash: str = "",
    signed_by_representative: bool = False,
    representative_authority: str = "",
) -> Authorization:
    """Record an authorization the patient (or their personal representative) signed on paper, with the
    scan of that paper, attributed to the staff member `actor` (issue 4 item 6, R-AUTH-CORE-6)."""
    if actor is None:
        raise ValidationError(gettext("A written authorization is recorded by a staff member."))
    if not signature_name.strip():
        raise ValidationError(  # R-AUTH-CORE-6
            gettext("Type the name as it is signed on the paper (HIPAA, 45 CFR 164.508(c)(1)(vi)).")
        )
    if signed_on > timezone.now():
        raise ValidationError(gettext("The signing date cannot be in the future."))
    scan_kind(scan)  # before storing anything
    with transaction.atomic(durable=True):
        return authorization_grant(
            actor=actor,
            patient=patient,
            purpose=purpose,
            signed_at=signed_on,
            expires_at=expires_at,
            expiry_event=expiry_event,
            channel=Authorization.Channel.WRITTEN,
            form_version=form_version,
            document_text=document_text,
            text_hash=text_hash,
            signature_name=signature_name,
            signed_by_representative=signed_by_representative,
            representative_authority=representative_authority,
            scan_name=scan_store(scan),
        )


def revocation_written_record(*, actor, authorization_id: int, scan: File) -> list[Revocation]:
    """Record a revocation received in writing (R-REVOKE-WRITTEN) with the scan of the letter. Like the
    patient's own revocation (consent.services.authorizations.authorization_revoke), it ends every authorization the
    patient has for that purpose, effective when this commits."""
    if actor is None:
        raise ValidationError(gettext("A written revocation is recorded by a staff member."))
    scan_kind(scan)
    with transaction.atomic(durable=True):
        target = Authorization.objects.only("patient_id", "purpose_id").get(pk=authorization_id)
        ids = list(
            Authorization.objects.filter(
                patient_id=target.patient_id, purpose_id=target.purpose_id, revocation__isnull=True
            ).values_list("id", flat=True)
        )
        if authorization_id not in ids:
            raise ValidationError(gettext("This authorization is already revoked."), code="already_revoked")
        return authorizations_revoke_locked(
            actor=actor, authorization_ids=ids, channel=Revocation.Channel.WRITTEN, scan_name=scan_store(scan)
        )
