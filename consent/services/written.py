"""Authorizations and revocations received on paper and recorded by staff (R-REVOKE-WRITTEN, issue 4 item 6).

The scan is part of the evidence row and the rows are append-only (a database trigger refuses updates), so
the row is inserted with its scan; the core services do not take one, hence these. They keep ADR 0001: a
revocation locks the authorization rows it ends FOR UPDATE, in primary-key order, before inserting, so a
sending batch either saw the authorization before the revocation or waits for it to commit.

The helpers without `_record` in their names do not open a durable transaction, so that the FHIR import can
call them inside its own single transaction (consent.services.fhir).
"""
import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from consent.models import Authorization, AuthorizationForm, Patient, Purpose, Revocation

# What a scan may be, by its first bytes (never by the name or the type the browser claims).
SCAN_MAX_BYTES = 10 * 1024 * 1024
_SCAN_SIGNATURES = {b"%PDF-": "pdf", b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpg"}


def scan_kind(upload: File) -> str:
    """The file kind of an uploaded scan ("pdf", "png" or "jpg"), or a ValidationError that says what is
    allowed. Never echoes the file's name, which may hold a patient's name (R-NO-PHI-LEAK)."""
    if upload is None:
        raise ValidationError("Attach the scan of the signed paper.", code="scan_required")
    if upload.size > SCAN_MAX_BYTES:
        raise ValidationError("The scan is larger than 10 MB. Scan at a lower resolution.", code="scan_too_large")
    if upload.size == 0:
        raise ValidationError("The scan is empty.", code="scan_empty")
    upload.seek(0)
    head = upload.read(8)
    upload.seek(0)
    for signature, kind in _SCAN_SIGNATURES.items():
        if head.startswith(signature):
            return kind
    raise ValidationError("The scan must be a PDF, PNG or JPEG file.", code="scan_type")


def scan_store(upload: File, *, folder: str = "scans") -> str:
    """Save a checked scan under a random name (the uploaded name may hold PHI) and return the stored name."""
    kind = scan_kind(upload)
    return default_storage.save(f"{folder}/{uuid.uuid4().hex}.{kind}", upload)


def authorization_insert(
    *,
    actor,
    patient: Patient,
    purpose: Purpose,
    signed_at: datetime,
    expires_at: datetime | None,
    expiry_event: str,
    channel: str,
    form_version: AuthorizationForm | None = None,
    document_text: str = "",
    text_hash: str = "",
    signature_name: str = "",
    signed_by_representative: bool = False,
    representative_authority: str = "",
    scan_name: str = "",
    pdf_name: str = "",
) -> Authorization:
    """Insert one authorization with its stored documents and audit it. The caller owns the transaction.
    The checks are those of consent.services.authorization_grant."""
    if form_version is not None and form_version.purpose_id != purpose.pk:
        raise ValidationError("An authorization is for the purpose of its form (R-AUTH-NO-COMPOUND).")
    if signed_by_representative and not representative_authority.strip():
        raise ValidationError("A personal representative must describe their authority (R-AUTH-CORE-6).")
    authorization = Authorization(
        patient=patient,
        purpose=purpose,
        form_version=form_version,
        signed_at=signed_at,
        expires_at=expires_at,
        expiry_event=expiry_event.strip(),
        channel=channel,
        document_text=document_text,
        text_hash=text_hash,
        signature_name=signature_name.strip(),
        signed_by_representative=signed_by_representative,
        representative_authority=representative_authority.strip() if signed_by_representative else "",
        scan=scan_name,
        pdf=pdf_name,
        recorded_by=actor,
    )
    authorization.full_clean(exclude=["pdf", "scan"])
    authorization.save(force_insert=True)
    audit_record(
        actor=actor,
        action="authorization.granted",
        object_type="authorization",
        object_id=authorization.pk,
        details={
            "patient_id": patient.pk,
            "purpose": purpose.code,
            "channel": channel,
            "has_scan": bool(scan_name),
            "representative": signed_by_representative,
        },
    )
    return authorization


def revocations_insert(*, actor, authorization_ids: list[int], channel: str, scan_name: str = "") -> list[Revocation]:
    """Lock these authorizations FOR UPDATE in primary-key order (ADR 0001, as authorization_revoke does),
    then revoke those not yet revoked, and audit. The caller owns the transaction. Returns the new rows."""
    locked = list(
        Authorization.objects.select_for_update(of=("self",)).filter(id__in=authorization_ids).order_by("id")
    )
    already = set(Revocation.objects.filter(authorization__in=locked).values_list("authorization_id", flat=True))
    revocations = []
    for authorization in locked:
        if authorization.pk in already:
            continue
        revocation = Revocation(authorization=authorization, channel=channel, scan=scan_name, recorded_by=actor)
        revocation.full_clean(exclude=["authorization", "revoked_at", "scan"])
        revocation.save(force_insert=True)
        revocations.append(revocation)
    by_patient: dict[tuple[int, int], list[int]] = {}
    for revocation in revocations:
        key = (revocation.authorization.patient_id, revocation.authorization.purpose_id)
        by_patient.setdefault(key, []).append(revocation.authorization_id)
    for (patient_id, purpose_id), ids in sorted(by_patient.items()):
        # The same shape as consent.services.authorization_revoke writes, plus whether a scan is attached.
        audit_record(
            actor=actor,
            action="authorization.revoked",
            object_type="patient",
            object_id=patient_id,
            details={
                "purpose_id": purpose_id,
                "channel": channel,
                "authorization_ids": ids,
                "has_scan": bool(scan_name),
            },
        )
    return revocations


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
        raise ValidationError("A written authorization is recorded by a staff member.")
    if not signature_name.strip():
        raise ValidationError("Type the name as it is signed on the paper (R-AUTH-CORE-6).")
    if signed_on > timezone.now():
        raise ValidationError("The signing date cannot be in the future.")
    scan_kind(scan)  # before storing anything
    with transaction.atomic(durable=True):
        return authorization_insert(
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
    patient's own revocation (consent.services.authorization_revoke), it ends every authorization the
    patient has for that purpose, effective when this commits."""
    if actor is None:
        raise ValidationError("A written revocation is recorded by a staff member.")
    scan_kind(scan)
    with transaction.atomic(durable=True):
        target = Authorization.objects.only("patient_id", "purpose_id").get(pk=authorization_id)
        ids = list(
            Authorization.objects.filter(
                patient_id=target.patient_id, purpose_id=target.purpose_id, revocation__isnull=True
            ).values_list("id", flat=True)
        )
        if authorization_id not in ids:
            raise ValidationError("This authorization is already revoked.", code="already_revoked")
        return revocations_insert(
            actor=actor, authorization_ids=ids, channel=Revocation.Channel.WRITTEN, scan_name=scan_store(scan)
        )
