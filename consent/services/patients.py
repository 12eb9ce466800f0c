"""Creating a patient, and creating or updating a batch of them (the integration API's upsert): direct
identifiers encrypted, coded attributes kept queryable, audited without PHI."""

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import actions
from audit.services import audit_record
from consent import crypto
from consent.models import Language, Patient, PatientCondition, ProgramEnrolment
from consent.patient_import.validate import (
    COLUMNS,
    ERROR_MESSAGES,
    PatientRow,
    patient_fields_check,
    patient_row_make,
    time_zone_name,
)
from consent.patient_import.write import patient_rows_save

# English on purpose: only the integration API (whose problem details stay English) and the demo seed read these.
_BAD_TIME_ZONE = "Use an IANA time zone such as America/New_York."


def time_zone_check(name: str) -> None:
    """A patient's time zone is an IANA name ("America/New_York") or empty (the organisation's)."""
    if name and time_zone_name(name) != name:
        raise ValidationError({"time_zone": ValidationError(_BAD_TIME_ZONE, code="bad_time_zone")})


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
    refill_due: date | None = None,
    time_zone: str = "",
    condition_codes: Iterable[str] = (),
    program_codes: Iterable[str] = (),
    language: str = Language.ENGLISH,
) -> Patient:
    email = email.strip().lower()
    validate_email(email)
    time_zone_check(time_zone)
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
        refill_due=refill_due,
        time_zone=time_zone,
        language=language,
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
            actor=actor,
            action=actions.PATIENT_CREATED,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
        )
    return patient


# --- Batch upsert (the integration API's nightly sync) ----------------------------------------------------


MAX_UPSERT_ITEMS = 1_000
_BATCH_SIZE = f"A batch holds 1 to {MAX_UPSERT_ITEMS:,} items."  # English on purpose: the integration API only


class UpsertStatus:
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


@dataclass
class ItemResult:
    index: int
    status: str
    patient_id: int | None = None
    errors: list[dict] = field(default_factory=list)  # [{"field", "code", "message"}]: never a value


def _field_error(column: str, code: str) -> dict:
    words = ERROR_MESSAGES.get(code, code)
    return {"field": column, "code": code, "message": f"{column.replace('_', ' ').capitalize()} {words}."[:200]}


def _current(patient: Patient, codes: dict, programs: dict) -> dict:
    """A stored patient's values in the shape patient_fields_check returns, to compare an item with."""
    return {
        "external_id": patient.external_id,
        "email": patient.email,
        "full_name": patient.full_name,
        "phone": patient.phone,
        "street_address": patient.street_address,
        "birth_date": date.fromisoformat(patient.birth_date) if patient.birth_date else None,
        "sex": patient.sex,
        "postal_code": patient.postal_code,
        "state": patient.state,
        "last_visit": patient.last_visit,
        "refill_due": patient.refill_due,
        "time_zone": patient.time_zone,
        "language": patient.language,
        "condition_codes": codes.get(patient.pk, frozenset()),
        "program_codes": programs.get(patient.pk, frozenset()),
    }


def _changed(values: dict, current: dict) -> bool:
    for column, value in values.items():
        if column in ("condition_codes", "program_codes"):
            if frozenset(value) != current[column]:
                return True
        elif value != current[column]:
            return True
    return False


def _patients_locked(externals: list[str], emails: list[str]) -> list[Patient]:
    """The patients whose external id or email digest is among these, locked in id order (the lock order).
    One digest lookup (a UNION of two index scans: an OR of two 1,000-value lists makes PostgreSQL scan the
    whole table, and `NOT (external_id_digest = '')` lets it use the partial unique index), then the lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM consent_patient WHERE external_id_digest = ANY(%s) AND NOT (external_id_digest = '') "
                "UNION SELECT id FROM consent_patient WHERE email_digest = ANY(%s)",
                [externals, emails],
            )
            ids = [pk for (pk,) in cursor.fetchall()]
    else:
        ids = list(
            Patient.objects.filter(Q(external_id_digest__in=externals) | Q(email_digest__in=emails)).values_list(
                "pk", flat=True
            )
        )
    if not ids:
        return []
    return list(Patient.objects.select_for_update().filter(pk__in=ids).order_by("pk"))


def patients_upsert(*, items: list[dict], source: str = "api", actor=None) -> list[ItemResult]:
    """Create or update up to MAX_UPSERT_ITEMS patients, each keyed by its `external_id` (the clinic's record
    number), with the rules of the CSV import (consent.patient_import.validate.patient_fields_check: the same
    error codes).

    An item names the columns it sets (COLUMNS); a column omitted (or None) is left as it is; condition_codes
    and program_codes given replace the patient's. A new patient needs email and full_name. Per item the result
    says created, updated, unchanged (every value given equals the stored one: nothing written) or rejected
    (with its errors: field and code, never a value). Rejected items change nothing; the others are written
    together in one durable transaction with one audit event (counts and error codes only, R-NO-PHI-LEAK).
    Rejected: an item whose external_id or email repeats an earlier item's (duplicate_in_batch; the first is
    kept), and an email that belongs to another patient (email_in_use).

    Set-based (issue 13, 2,000 patients/s or more over HTTP): one locking query finds every patient the batch
    names, by keyed digest of external id or email, in id order; two queries read their codes; new patients go
    in with COPY and updates with COPY into a temporary table and one UPDATE ... FROM (consent.patient_import
    .write); no per-item full_clean (patient_fields_check checks the model's fields, the database's unique
    constraints back the rest: a concurrent batch that wins a race makes this one raise IntegrityError, whole)."""
    if not 1 <= len(items) <= MAX_UPSERT_ITEMS:
        raise ValidationError(_BATCH_SIZE, code="batch_size")
    today = timezone.localdate()
    digest = crypto.lookup_digest
    results = [ItemResult(index=index, status=UpsertStatus.REJECTED) for index in range(len(items))]
    checked: list[tuple[int, dict, str, str]] = []  # (index, values, email digest, external id digest)
    seen_external: set[str] = set()
    seen_email: set[str] = set()
    for index, item in enumerate(items):
        unknown = set(item) - set(COLUMNS)
        if unknown:
            raise TypeError("patients_upsert items hold patient columns only (consent.patient_import.validate.COLUMNS)")
        raw = {column: value for column, value in item.items() if value is not None}
        values, errors = patient_fields_check(raw, today=today, required=("external_id",))
        external = str(raw.get("external_id") or "").strip()
        external_digest = digest(external) if external else ""
        email_digest = digest(values["email"]) if "email" in values else ""
        if external_digest and external_digest in seen_external:
            errors.append(("external_id", "duplicate_in_batch"))
        if email_digest and email_digest in seen_email:
            errors.append(("email", "duplicate_in_batch"))
        if external_digest:
            seen_external.add(external_digest)
        if email_digest:
            seen_email.add(email_digest)
        if errors:
            results[index].errors = [_field_error(column, code) for column, code in errors]
        else:
            checked.append((index, values, email_digest, external_digest))

    with transaction.atomic(durable=True):
        externals = [external for _, _, _, external in checked]
        emails = [email for _, _, email, _ in checked if email]
        found = _patients_locked(externals, emails) if checked else []
        by_external = {patient.external_id_digest: patient for patient in found if patient.external_id_digest}
        by_email = {patient.email_digest: patient for patient in found}
        matched = [by_external[external] for _, _, _, external in checked if external in by_external]
        codes: dict[int, set] = defaultdict(set)
        programs: dict[int, set] = defaultdict(set)
        if matched:
            ids = [patient.pk for patient in matched]
            for patient_id, code in PatientCondition.objects.filter(patient_id__in=ids).values_list(
                "patient_id", "code"
            ):
                codes[patient_id].add(code)
            for patient_id, code in ProgramEnrolment.objects.filter(patient_id__in=ids).values_list(
                "patient_id", "code"
            ):
                programs[patient_id].add(code)
        codes_frozen = {pk: frozenset(value) for pk, value in codes.items()}
        programs_frozen = {pk: frozenset(value) for pk, value in programs.items()}

        creates: list[tuple[int, PatientRow]] = []
        updates: dict[tuple[str, ...], list[tuple[int, PatientRow]]] = defaultdict(list)
        for index, values, email_digest, external_digest in checked:
            patient = by_external.get(external_digest)
            holder = by_email.get(email_digest) if email_digest else None
            if holder is not None and (patient is None or holder.pk != patient.pk):
                results[index].errors = [_field_error("email", "email_in_use")]
                continue
            if patient is None:
                missing = [column for column in ("email", "full_name") if column not in values]
                if missing:
                    results[index].errors = [_field_error(column, "missing_required") for column in missing]
                    continue
                creates.append(
                    (index, patient_row_make(values, row=0, email_digest=email_digest, external_digest=external_digest))
                )
                continue
            results[index].patient_id = patient.pk
            if not _changed(values, _current(patient, codes_frozen, programs_frozen)):
                results[index].status = UpsertStatus.UNCHANGED
                continue
            columns = tuple(column for column in COLUMNS if column in values)
            updates[columns].append(
                (
                    index,
                    patient_row_make(
                        values,
                        row=0,
                        email_digest=email_digest or patient.email_digest,
                        external_digest=external_digest,
                        patient_id=patient.pk,
                    ),
                )
            )

        if creates:
            ids = patient_rows_save(rows=[row for _, row in creates])
            for (index, _), patient_id in zip(creates, ids, strict=True):
                results[index].status, results[index].patient_id = UpsertStatus.CREATED, patient_id
        # Updates are grouped by the columns their items give (a nightly sync sends the same ones): each group
        # sets exactly those columns, so an omitted column is never rewritten.
        for columns, group in updates.items():
            patient_rows_save(rows=[row for _, row in group], columns=columns)
            for index, _ in group:
                results[index].status = UpsertStatus.UPDATED
        counts = Counter(result.status for result in results)
        audit_record(
            actor=actor,
            action=actions.PATIENTS_UPSERTED,
            object_type="patient",
            details={
                "source": source,
                "items": len(items),
                **{status: counts.get(status, 0) for status in UPSERT_STATUSES},
                "error_codes": dict(
                    sorted(Counter(error["code"] for result in results for error in result.errors).items())
                ),
            },
        )
    return results


UPSERT_STATUSES = (UpsertStatus.CREATED, UpsertStatus.UPDATED, UpsertStatus.UNCHANGED, UpsertStatus.REJECTED)


def patient_language_set(*, actor, patient_id: int, language: str, source: str) -> bool:
    """Store the language a patient reads their mail and forms in (issue 17, item 6): chosen by the patient in the
    portal (actor None, source "portal") or by staff on their record (source "staff"). Audited with the code only;
    setting it to what it is writes nothing. Returns whether it changed."""
    if language not in Language.values:
        raise ValidationError({"language": ValidationError(_("Choose English or Spanish."), code="bad_language")})
    with transaction.atomic():
        patient = Patient.objects.select_for_update().get(pk=patient_id)
        if patient.language == language:
            return False
        before = patient.language
        patient.language = language
        patient.save(update_fields=["language"])
        audit_record(
            actor=actor,
            actor_role="" if actor else actions.PATIENT,
            action=actions.PATIENT_LANGUAGE_SET,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
            details={"language": language, "before": before, "source": source},
        )
    return True
