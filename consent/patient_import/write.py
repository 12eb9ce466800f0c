"""Write a validated import whole or not at all (COPY / bulk_create), one run at a time."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from audit import actions
from audit.services import audit_record
from consent import crypto
from consent.models import Patient, PatientCondition, PatientImport, ProgramEnrolment
from consent.patient_import.validate import (
    MAX_STORED_ERRORS,
    ImportRefused,
    PatientRow,
    Validation,
    patient_csv_validate,
    validation_details,
)

logger = logging.getLogger(__name__)


BATCH_SIZE = 2_000


def _patient(row: PatientRow, now) -> Patient:
    # Plaintext goes in; EncryptedTextField.get_prep_value encrypts each value as bulk_create prepares it.
    return Patient(
        external_id=row.external_id,
        external_id_digest=row.external_id_digest,
        email=row.email,
        email_digest=row.email_digest,
        full_name=row.full_name,
        phone=row.phone,
        street_address=row.street_address,
        birth_date=row.birth_date.isoformat() if row.birth_date else "",
        birth_year=row.birth_date.year if row.birth_date else None,
        sex=row.sex,
        postal_code=row.postal_code,
        state=row.state,
        last_visit=row.last_visit,
        created_at=now,
    )


def _write_bulk_create(batch: Sequence[PatientRow], now) -> None:
    patients = Patient.objects.bulk_create([_patient(row, now) for row in batch])
    PatientCondition.objects.bulk_create(
        [
            PatientCondition(patient_id=patient.pk, code=code)
            for patient, row in zip(patients, batch, strict=True)
            for code in row.condition_codes
        ]
    )
    ProgramEnrolment.objects.bulk_create(
        [
            ProgramEnrolment(patient_id=patient.pk, code=code)
            for patient, row in zip(patients, batch, strict=True)
            for code in row.program_codes
        ]
    )


# The columns COPY writes, which must be every column of the table: a test compares them with the model.
COPY_PATIENT_COLUMNS = (
    "id",
    "external_id",
    "external_id_digest",
    "email",
    "email_digest",
    "full_name",
    "phone",
    "street_address",
    "birth_date",
    "birth_year",
    "sex",
    "postal_code",
    "state",
    "last_visit",
    "created_at",
)


def _write_copy(batch: Sequence[PatientRow], now) -> None:
    """PostgreSQL's COPY: ids reserved from the table's sequence first so that conditions can name them. The
    values are encrypted and digested exactly as EncryptedTextField and patient_create would (empty stays
    empty); the table's constraints check COPY rows like any insert."""
    encrypt = crypto.encrypt
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('consent_patient', 'id')) FROM generate_series(1, %s)",
            [len(batch)],
        )
        ids = [pk for (pk,) in cursor.fetchall()]
        raw = cursor.cursor
        with raw.copy(f"COPY consent_patient ({', '.join(COPY_PATIENT_COLUMNS)}) FROM STDIN") as copy:
            for pk, row in zip(ids, batch, strict=True):
                birth_date = row.birth_date.isoformat() if row.birth_date else ""
                copy.write_row(
                    (
                        pk,
                        encrypt(row.external_id) if row.external_id else "",
                        row.external_id_digest,
                        encrypt(row.email),
                        row.email_digest,
                        encrypt(row.full_name),
                        encrypt(row.phone) if row.phone else "",
                        encrypt(row.street_address) if row.street_address else "",
                        encrypt(birth_date) if birth_date else "",
                        row.birth_date.year if row.birth_date else None,
                        row.sex,
                        row.postal_code,
                        row.state,
                        row.last_visit,
                        now,
                    )
                )
        with raw.copy("COPY consent_patientcondition (patient_id, code) FROM STDIN") as copy:
            for pk, row in zip(ids, batch, strict=True):
                for code in row.condition_codes:
                    copy.write_row((pk, code))
        if any(row.program_codes for row in batch):
            with raw.copy("COPY consent_programenrolment (patient_id, code) FROM STDIN") as copy:
                for pk, row in zip(ids, batch, strict=True):
                    for code in row.program_codes:
                        copy.write_row((pk, code))


def patient_rows_write(
    *,
    rows: Sequence[PatientRow],
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    method: str = "",
) -> int:
    """Create the patients of validated rows, in batches, inside the caller's transaction: COPY on PostgreSQL,
    bulk_create elsewhere (or when `method` says so). Unchecked: callers validate first
    (patient_csv_validate) and hold one transaction around the whole write."""
    if not connection.in_atomic_block:
        raise RuntimeError("patient_rows_write runs inside the import's transaction")
    method = method or ("copy" if connection.vendor == "postgresql" else "bulk_create")
    write_batch = _write_copy if method == "copy" else _write_bulk_create
    now = timezone.now()
    written = 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        write_batch(batch, now)
        written += len(batch)
        if on_batch is not None:
            on_batch(written)
    return written


def patient_csv_import(*, actor, text: str, dry_run: bool = False, source: str = "command") -> Validation:
    """Validate and, when there is no error and this is no dry run, write every row in one transaction with one
    audit event. Raises ImportRefused (holding the Validation) when the file has errors."""
    validation = patient_csv_validate(text=text)
    if validation.errors:
        raise ImportRefused("The file has errors; nothing was imported.", validation)
    if dry_run:
        return validation
    with transaction.atomic(durable=True):
        patient_rows_write(rows=validation.rows)
        audit_record(
            actor=actor,
            actor_role="" if actor else actions.SYSTEM,
            action=actions.PATIENT_IMPORT_FINISHED,
            object_type="patient_import",
            details={"source": source, "total_rows": validation.total_rows, "created": validation.valid_rows},
        )
    return validation


@contextmanager
def _progress(patient_import_id: int) -> Iterator[Callable[[int], None]]:
    """Report processed rows on a connection of its own, in autocommit, so that the page polling the import
    sees progress while the import's transaction is open. SQLite has one writer: no progress until the end."""
    if connection.vendor != "postgresql":
        yield lambda processed: None
        return
    side = connections.create_connection(DEFAULT_DB_ALIAS)
    try:

        def report(processed: int) -> None:
            with side.cursor() as cursor:
                cursor.execute(
                    "UPDATE consent_patientimport SET processed_rows = %s WHERE id = %s AND status = %s",
                    [processed, patient_import_id, PatientImport.Status.IMPORTING],
                )

        yield report
    finally:
        side.close()


def _finish(patient_import_id: int, *, status: str, errors: list | None = None, **counts) -> None:
    fields = {"status": status, "finished_at": timezone.now(), **counts}
    if errors is not None:
        fields["errors"] = errors
    PatientImport.objects.filter(pk=patient_import_id, status=PatientImport.Status.IMPORTING).update(**fields)


def _discard_file(patient_import: PatientImport) -> None:
    if patient_import.file:
        patient_import.file.delete(save=False)
        PatientImport.objects.filter(pk=patient_import.pk).update(file="")


# pg_try_advisory_lock(RUN_LOCK_CLASS, import id): held by the one run writing an import, for as long as its
# connection lives (a worker that dies releases it with its connection).
RUN_LOCK_CLASS = 0x1A4F


@contextmanager
def _run_lock(patient_import_id: int) -> Iterator[bool]:
    """Whether this process may run the import: True unless another run holds it now (PostgreSQL). On SQLite
    (the demo, one worker for imports) always True."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RUN_LOCK_CLASS, patient_import_id])
        (taken,) = cursor.fetchone()
    try:
        yield taken
    finally:
        if taken:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_CLASS, patient_import_id])


def patient_import_run(*, patient_import_id: int, batch_size: int = BATCH_SIZE) -> PatientImport:
    """Write a started import whole, or nothing. Safe to run twice and at once: a finished import is left as it
    is, and while one run holds the import's lock another returns at once (it neither writes nor records a
    failure). The reconciler (`patient_import_rewake`) relies on that to re-run an import whose task was lost."""
    with _run_lock(patient_import_id) as mine:
        if not mine:
            return PatientImport.objects.get(pk=patient_import_id)
        return _patient_import_run_locked(patient_import_id=patient_import_id, batch_size=batch_size)


def _patient_import_run_locked(*, patient_import_id: int, batch_size: int) -> PatientImport:
    patient_import = PatientImport.objects.get(pk=patient_import_id)
    if patient_import.status != PatientImport.Status.IMPORTING:
        return patient_import
    PatientImport.objects.filter(pk=patient_import_id).update(processed_rows=0)
    text = crypto.decrypt(patient_import.file.read().decode())
    patient_import.file.close()
    validation = patient_csv_validate(text=text)
    del text
    if validation.errors:
        # Patients created since the preview: refuse now, with the reasons, and write nothing.
        with transaction.atomic(durable=True):
            _finish(
                patient_import_id,
                status=PatientImport.Status.FAILED,
                errors=validation.errors[:MAX_STORED_ERRORS],
                error_count=validation.rows_with_errors,
            )
            audit_record(
                actor=None,
                action=actions.PATIENT_IMPORT_FAILED,
                object_type="patient_import",
                object_id=patient_import_id,
                details={"reason": "errors_at_import", **validation_details(validation)},
            )
        _discard_file(patient_import)
        return PatientImport.objects.get(pk=patient_import_id)
    try:
        with _progress(patient_import_id) as report, transaction.atomic(durable=True):
            created = patient_rows_write(rows=validation.rows, batch_size=batch_size, on_batch=report)
            _finish(
                patient_import_id,
                status=PatientImport.Status.DONE,
                processed_rows=created,
                created_count=created,
            )
            audit_record(
                actor=None,
                action=actions.PATIENT_IMPORT_FINISHED,
                object_type="patient_import",
                object_id=patient_import_id,
                details={"total_rows": validation.total_rows, "created": created},
            )
    except Exception as error:
        # Nothing was written (the transaction rolled back). Log the kind of error only: database messages
        # can quote the values they refused (R-NO-PHI-LEAK).
        logger.error("patient import %s failed: %s", patient_import_id, type(error).__name__)
        with transaction.atomic(durable=True):
            _finish(patient_import_id, status=PatientImport.Status.FAILED, processed_rows=0, created_count=0)
            audit_record(
                actor=None,
                action=actions.PATIENT_IMPORT_FAILED,
                object_type="patient_import",
                object_id=patient_import_id,
                details={"reason": "write_failed", "error": type(error).__name__},
            )
    _discard_file(patient_import)
    return PatientImport.objects.get(pk=patient_import_id)
