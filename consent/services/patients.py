"""Creating a patient: direct identifiers encrypted, coded attributes kept queryable, audited without PHI."""
from collections.abc import Iterable
from datetime import date

from django.core.validators import validate_email
from django.db import transaction

from audit import actions
from audit.services import audit_record
from consent import crypto
from consent.models import Patient, PatientCondition, ProgramEnrolment


def patient_create(
    *,
    actor,
    email: str,
    full_name: str,
    birth_year: int | None = None,
    sex: str = "",
    postal_code: str = "",
    state: str = "",
    phone: str = "",
    street_address: str = "",
    birth_date: date | None = None,
    external_id: str = "",
    last_visit: date | None = None,
    condition_codes: Iterable[str] = (),
    program_codes: Iterable[str] = (),
) -> Patient:
    email = email.strip().lower()
    validate_email(email)
    patient = Patient(
        email=email,
        email_digest=crypto.lookup_digest(email),
        full_name=full_name.strip(),
        birth_date=birth_date.isoformat() if birth_date else "",
        birth_year=birth_date.year if birth_date else birth_year,
        sex=sex,
        postal_code=postal_code,
        state=state,
        phone=phone,
        street_address=street_address,
        external_id=external_id,
        external_id_digest=crypto.lookup_digest(external_id) if external_id else "",
        last_visit=last_visit,
    )
    patient.full_clean(exclude=["email"])  # the address was validated above; the field holds ciphertext
    with transaction.atomic():
        patient.save(force_insert=True)
        PatientCondition.objects.bulk_create(
            PatientCondition(patient=patient, code=code.strip().upper()) for code in set(condition_codes)
        )
        ProgramEnrolment.objects.bulk_create(
            ProgramEnrolment(patient=patient, code=code.strip().upper()) for code in set(program_codes)
        )
        audit_record(
            actor=actor, action=actions.PATIENT_CREATED, object_type="patient", object_id=patient.pk, patient_id=patient.pk
        )
    return patient
