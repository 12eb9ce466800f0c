"""Write a validated import whole or not at all, one run at a time: new patients with COPY (bulk_create on
SQLite), updated ones with COPY into a temporary table and one UPDATE ... FROM per batch (bulk_update on SQLite).
The API's upsert (consent.services.patients.patients_upsert) writes through the same functions."""

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
    COLUMNS,
    MAX_STORED_ERRORS,
    ImportRefused,
    Mode,
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
        refill_due=row.refill_due,
        time_zone=row.time_zone,
        language=row.language,
        created_at=now,
    )


def _write_bulk_create(batch: Sequence[PatientRow], now) -> list[int]:
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
    return [patient.pk for patient in patients]


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
    "refill_due",
    "time_zone",
    "language",  # the file's language column, English when it has none (issue 17)
    "authorized_purposes",  # a new patient has signed for none (ADR 0021)
    "created_at",
)


def _write_copy(batch: Sequence[PatientRow], now) -> list[int]:
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
                        row.refill_due,
                        row.time_zone,
                        row.language,
                        0,
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
    return ids


# What an update sets for each CSV column given: the patient's table columns it decides.
UPDATE_FIELDS = {
    "external_id": ("external_id", "external_id_digest"),
    "email": ("email", "email_digest"),
    "full_name": ("full_name",),
    "phone": ("phone",),
    "street_address": ("street_address",),
    "birth_date": ("birth_date", "birth_year"),
    "sex": ("sex",),
    "postal_code": ("postal_code",),
    "state": ("state",),
    "last_visit": ("last_visit",),
    "refill_due": ("refill_due",),
    "time_zone": ("time_zone",),
    "language": ("language",),
}

# The temporary table an update batch is copied into (dropped when the import's transaction commits).
_UPDATE_TABLE = "hm_patient_update"
_UPDATE_TABLE_DDL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_UPDATE_TABLE} (id bigint PRIMARY KEY, external_id text, "
    "external_id_digest text, email text, email_digest text, full_name text, phone text, street_address text, "
    "birth_date text, birth_year smallint, sex text, postal_code text, state text, last_visit date, refill_due date, time_zone text, language text) ON COMMIT DROP"
)


def _update_values(row: PatientRow, fields: Sequence[str], encrypt) -> list:
    """The table's values of `fields` for one row, encrypted and digested as EncryptedTextField and
    patient_create would (empty stays empty); only the fields written are encrypted."""
    values = []
    for name in fields:
        if name == "birth_date":
            birth_date = row.birth_date.isoformat() if row.birth_date else ""
            values.append(encrypt(birth_date) if birth_date else "")
        elif name == "birth_year":
            values.append(row.birth_date.year if row.birth_date else None)
        elif name in _ENCRYPTED:
            value = getattr(row, name)
            values.append(encrypt(value) if value else "")
        else:
            values.append(getattr(row, name))
    return values


_ENCRYPTED = frozenset({"external_id", "email", "full_name", "phone", "street_address"})


def _update_fields(columns: Sequence[str]) -> list[str]:
    return [name for column in COLUMNS if column in columns for name in UPDATE_FIELDS.get(column, ())]


def _update_copy(batch: Sequence[PatientRow], columns: Sequence[str]) -> list[int]:
    """COPY the batch's new values into a temporary table, then one UPDATE ... FROM sets the given columns of
    every patient in it; condition and program codes given are replaced (one DELETE, one COPY each). Set-based:
    four or five statements per batch whatever its size (bulk_update's CASE per column and row grows with it)."""
    fields = _update_fields(columns)
    ids = [row.patient_id for row in batch]
    encrypt = crypto.encrypt
    with connection.cursor() as cursor:
        raw = cursor.cursor
        if fields:
            cursor.execute(_UPDATE_TABLE_DDL)
            cursor.execute(f"TRUNCATE {_UPDATE_TABLE}")
            with raw.copy(f"COPY {_UPDATE_TABLE} (id, {', '.join(fields)}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row((row.patient_id, *_update_values(row, fields, encrypt)))
            assignments = ", ".join(f"{name} = t.{name}" for name in fields)
            cursor.execute(f"UPDATE consent_patient AS p SET {assignments} FROM {_UPDATE_TABLE} AS t WHERE p.id = t.id")
        for column, table, attribute in (
            ("condition_codes", "consent_patientcondition", "condition_codes"),
            ("program_codes", "consent_programenrolment", "program_codes"),
        ):
            if column not in columns:
                continue
            cursor.execute(f"DELETE FROM {table} WHERE patient_id = ANY(%s)", [ids])
            if any(getattr(row, attribute) for row in batch):
                with raw.copy(f"COPY {table} (patient_id, code) FROM STDIN") as copy:
                    for row in batch:
                        for code in getattr(row, attribute):
                            copy.write_row((row.patient_id, code))
    return ids


def _update_bulk(batch: Sequence[PatientRow], columns: Sequence[str]) -> list[int]:
    """The SQLite demo's path: bulk_update (the fields encrypt their values), codes deleted and re-created."""
    fields = _update_fields(columns)
    ids = [row.patient_id for row in batch]
    if fields:
        patients = []
        for row in batch:
            patient = Patient(pk=row.patient_id)
            for name, value in zip(fields, _update_values(row, fields, lambda text: text), strict=True):
                setattr(patient, name, value)
            patients.append(patient)
        Patient.objects.bulk_update(patients, fields)
    if "condition_codes" in columns:
        PatientCondition.objects.filter(patient_id__in=ids).delete()
        PatientCondition.objects.bulk_create(
            PatientCondition(patient_id=row.patient_id, code=code) for row in batch for code in row.condition_codes
        )
    if "program_codes" in columns:
        ProgramEnrolment.objects.filter(patient_id__in=ids).delete()
        ProgramEnrolment.objects.bulk_create(
            ProgramEnrolment(patient_id=row.patient_id, code=code) for row in batch for code in row.program_codes
        )
    return ids


def patient_rows_save(
    *,
    rows: Sequence[PatientRow],
    columns: Sequence[str] = COLUMNS,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    method: str = "",
) -> list[int]:
    """Create the patients of validated rows without a patient_id and update those with one (setting
    `columns`: the file's columns, or every column for the API's merged items), in batches, inside the caller's
    transaction. Returns the patients' ids in the order of `rows`. Creates go first, then updates, in
    patient-id order (the lock order). Unchecked: callers validate first and hold one transaction around the
    whole write."""
    if not connection.in_atomic_block:
        raise RuntimeError("patient_rows_write runs inside the import's transaction")
    method = method or ("copy" if connection.vendor == "postgresql" else "bulk_create")
    write_batch = _write_copy if method == "copy" else _write_bulk_create
    update_batch = _update_copy if method == "copy" else _update_bulk
    now = timezone.now()
    written = 0
    ids: dict[int, int] = {}
    creates = [(index, row) for index, row in enumerate(rows) if row.patient_id is None]
    updates = sorted(
        ((index, row) for index, row in enumerate(rows) if row.patient_id is not None),
        key=lambda pair: pair[1].patient_id,
    )
    steps = ((creates, lambda batch: write_batch(batch, now)), (updates, lambda batch: update_batch(batch, columns)))
    for pairs, write in steps:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            batch_ids = write([row for _, row in chunk])
            ids.update((index, pk) for (index, _), pk in zip(chunk, batch_ids or (), strict=False))
            written += len(chunk)
            if on_batch is not None:
                on_batch(written)
    return [ids.get(index) for index in range(len(rows))]


def patient_rows_write(
    *,
    rows: Sequence[PatientRow],
    columns: Sequence[str] = COLUMNS,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    method: str = "",
) -> int:
    """Write validated rows (patient_rows_save) and return how many: COPY on PostgreSQL, bulk_create and
    bulk_update elsewhere (or when `method` says so). Unchecked: callers validate first
    (patient_csv_validate) and hold one transaction around the whole write."""
    return len(patient_rows_save(rows=rows, columns=columns, batch_size=batch_size, on_batch=on_batch, method=method))


def _finished_details(validation: Validation, created: int, updated: int) -> dict:
    details = {"total_rows": validation.total_rows, "created": created}
    if validation.mode == Mode.UPDATE:
        details |= {"mode": validation.mode, "updated": updated}
    return details


def patient_csv_import(
    *, actor, text: str, dry_run: bool = False, source: str = "command", mode: str = Mode.CREATE
) -> Validation:
    """Validate and, when there is no error and this is no dry run, write every row in one transaction with one
    audit event (counts only). Raises ImportRefused (holding the Validation) when the file has errors."""
    validation = patient_csv_validate(text=text, mode=mode)
    if validation.errors:
        raise ImportRefused("The file has errors; nothing was imported.", validation)
    if dry_run:
        return validation
    with transaction.atomic(durable=True):
        patient_rows_write(rows=validation.rows, columns=validation.columns)
        audit_record(
            actor=actor,
            actor_role="" if actor else actions.SYSTEM,
            action=actions.PATIENT_IMPORT_FINISHED,
            object_type="patient_import",
            details={
                "source": source,
                **_finished_details(validation, validation.create_rows, validation.update_rows),
            },
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
    validation = patient_csv_validate(text=text, mode=patient_import.mode)
    del text
    if validation.errors:
        # Patients created since the preview: refuse now, with the reasons, and write nothing.
        with transaction.atomic(durable=True):
            _finish(
                patient_import_id,
                status=PatientImport.Status.FAILED,
                errors=validation.errors[:MAX_STORED_ERRORS],
                error_count=validation.rows_with_errors,
                created_count=0,
                updated_count=0,
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
            written = patient_rows_write(
                rows=validation.rows, columns=validation.columns, batch_size=batch_size, on_batch=report
            )
            created, updated = validation.create_rows, validation.update_rows
            _finish(
                patient_import_id,
                status=PatientImport.Status.DONE,
                processed_rows=written,
                created_count=created,
                updated_count=updated,
            )
            audit_record(
                actor=None,
                action=actions.PATIENT_IMPORT_FINISHED,
                object_type="patient_import",
                object_id=patient_import_id,
                details=_finished_details(validation, created, updated),
            )
    except Exception as error:
        # Nothing was written (the transaction rolled back). Log the kind of error only: database messages
        # can quote the values they refused (R-NO-PHI-LEAK).
        logger.error("patient import %s failed: %s", patient_import_id, type(error).__name__)
        with transaction.atomic(durable=True):
            _finish(
                patient_import_id,
                status=PatientImport.Status.FAILED,
                processed_rows=0,
                created_count=0,
                updated_count=0,
            )
            audit_record(
                actor=None,
                action=actions.PATIENT_IMPORT_FAILED,
                object_type="patient_import",
                object_id=patient_import_id,
                details={"reason": "write_failed", "error": type(error).__name__},
            )
    _discard_file(patient_import)
    return PatientImport.objects.get(pk=patient_import_id)
