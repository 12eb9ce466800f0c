"""Writes about consent: patients, purposes, authorizations granted and revoked. Each audits in the same
transaction as the change it records."""
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit.services import PATIENT, audit_record
from consent.models import Authorization, Patient, Purpose, Revocation


def patient_create(
    *, actor, email: str, full_name: str, birth_year: int | None = None, sex: str = "", postal_code: str = ""
) -> Patient:
    patient = Patient(
        email=email.strip().lower(), full_name=full_name, birth_year=birth_year, sex=sex, postal_code=postal_code
    )
    patient.full_clean()
    with transaction.atomic():
        patient.save(force_insert=True)
        audit_record(actor=actor, action="patient.created", object_type="patient", object_id=patient.pk)
    return patient


def purpose_create(
    *, actor, code: str, name: str, description: str, kind: str, third_party_paid: bool = False
) -> Purpose:
    purpose = Purpose(code=code, name=name, description=description, kind=kind, third_party_paid=third_party_paid)
    purpose.full_clean()
    with transaction.atomic():
        purpose.save(force_insert=True)
        audit_record(
            actor=actor,
            action="purpose.created",
            object_type="purpose",
            object_id=purpose.pk,
            details={"code": purpose.code, "kind": purpose.kind, "third_party_paid": purpose.third_party_paid},
        )
    return purpose


def authorization_grant(
    *,
    actor,
    patient: Patient,
    purpose: Purpose,
    expires_at: datetime,
    signed_at: datetime | None = None,
    channel: str = Authorization.Channel.WEB,
    text_hash: str = "",
) -> Authorization:
    """Store a signed authorization (or, for a treatment purpose, a consent to email). `actor` is the staff
    user who records it, or None when the patient signs for themselves."""
    authorization = Authorization(
        patient=patient,
        purpose=purpose,
        signed_at=signed_at or timezone.now(),
        expires_at=expires_at,
        channel=channel,
        text_hash=text_hash,
        recorded_by=actor,
    )
    authorization.full_clean()
    with transaction.atomic():
        authorization.save(force_insert=True)
        audit_record(
            actor=actor,
            actor_role="" if actor else PATIENT,
            action="authorization.granted",
            object_type="authorization",
            object_id=authorization.pk,
            details={"patient_id": patient.pk, "purpose": purpose.code, "channel": channel},
        )
    return authorization


def authorization_revoke(*, actor, patient_id: int, purpose_id: int, channel: str) -> list[Revocation]:
    """Revoke every active authorization of this patient for this purpose, effective when this commits.

    The authorization rows are locked FOR UPDATE in primary-key order: a sending transaction holds them
    FOR SHARE while it checks and sends, so this waits for an in-flight batch to commit, and every batch
    that starts after this commits sees the revocation (R-REVOKE-ANYTIME). Revoking twice is harmless.
    """
    with transaction.atomic(durable=True):
        active = list(
            Authorization.objects.select_for_update(of=("self",))
            .filter(patient_id=patient_id, purpose_id=purpose_id, revocation__isnull=True)
            .order_by("id")
        )
        revocations = [
            Revocation.objects.create(authorization=authorization, channel=channel, recorded_by=actor)
            for authorization in active
        ]
        audit_record(
            actor=actor,
            actor_role="" if actor else PATIENT,
            action="authorization.revoked",
            object_type="patient",
            object_id=patient_id,
            details={
                "purpose_id": purpose_id,
                "channel": channel,
                "authorization_ids": [authorization.pk for authorization in active],
            },
        )
    return revocations
