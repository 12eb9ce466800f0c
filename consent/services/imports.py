"""Patient import from a CSV export of an EHR or CRM: validate everything first, then write the whole file or
nothing.

Decision (a compliance officer's): **a file with any error is refused whole.** The officer sees every problem
(row, column, what is wrong — never the value found there) and uploads a corrected export; there is no "import
the valid rows and skip the rest". Skipping rows would leave the system of record and hipaamail silently
disagreeing about who is a patient here, and "nothing half imported" is a promise about the file, not about a
batch. Rows that already exist (same email or same external id) count as errors for the same reason: the export
should be filtered at the source, so that what was imported is exactly the file that was approved.

How it runs:

1. Upload (`patient_import_upload`): the text is parsed and validated with the rules of `patient_create`
   (an email Django's validator accepts, stored lower-cased and trimmed; the model's choices and lengths) plus the
   import's own (strict YYYY-MM-DD dates, not in the future; US ZIP and state codes; ICD-10-shaped condition
   codes), and duplicates are found within the file and against existing patients by keyed digest
   (consent.crypto.lookup_digest). Errors are stored as {"row", "column", "code"}: row numbers as a spreadsheet
   shows them (the header is row 1). `PatientImport.error_count` counts the rows with at least one error, so the
   valid rows are `total_rows - error_count`; the stored list keeps the first MAX_STORED_ERRORS problems. A file
   without errors is kept encrypted (consent.crypto) until it is imported; a refused one is not kept at all, so
   plaintext PHI never rests on disk.
2. Start (`patient_import_start`): refused unless the preview had no error; enqueues the Celery task after
   commit.
3. Run (`patient_import_run`, the task's body, idempotent): validates again (patients may have been created
   since the preview), then writes in one durable transaction: Patient rows with bulk_create in batches of
   BATCH_SIZE (each encrypted field is encrypted by EncryptedTextField.get_prep_value, digests computed here),
   their PatientCondition rows the same way, then the import's status and one audit event. `full_clean` is not
   called per row, because its uniqueness check is one query per row; the same field rules are checked by the
   parser, uniqueness by one digest query per DIGEST_QUERY_CHUNK rows, and the database's unique constraints
   back both (a race loses with an IntegrityError and the whole transaction rolls back). Progress
   (`processed_rows`) is written on a second database connection in autocommit, so that the page polling it sees
   it while the import's own transaction is still open; on SQLite (the demo) the bar moves only at the end.
   One run at a time per import (an advisory lock on PostgreSQL); a task that was lost is run again by the
   reconciler (`patient_import_rewake`, every five minutes from Celery beat), so a started import is never left
   "importing" for good.

The management command `import_patients` uses `patient_csv_validate` and `patient_csv_import` with the same rules.
Audit: one event per step (previewed, started, finished or failed) holding counts and error codes, never a value.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.validators import validate_email
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from audit.services import audit_record
from consent import crypto
from consent.models import Patient, PatientCondition, PatientImport, ProgramEnrolment

logger = logging.getLogger(__name__)

BATCH_SIZE = 2_000
DIGEST_QUERY_CHUNK = 5_000
MAX_STORED_ERRORS = 1_000
MAX_FILE_BYTES = 50 * 1024 * 1024

COLUMNS = (
    "external_id",
    "email",
    "full_name",
    "phone",
    "street_address",
    "birth_date",
    "sex",
    "postal_code",
    "state",
    "last_visit",
    "condition_codes",
    "program_codes",
)
REQUIRED = ("email", "full_name")

# Header names some EHR and CRM exports use, lower-cased with spaces, dashes and dots turned into "_".
HEADER_ALIASES = {
    "mrn": "external_id",
    "patient_id": "external_id",
    "record_number": "external_id",
    "id": "external_id",
    "email_address": "email",
    "e_mail": "email",
    "e_mail_address": "email",
    "name": "full_name",
    "patient_name": "full_name",
    "phone_number": "phone",
    "telephone": "phone",
    "address": "street_address",
    "street": "street_address",
    "dob": "birth_date",
    "date_of_birth": "birth_date",
    "gender": "sex",
    "zip": "postal_code",
    "zip_code": "postal_code",
    "postcode": "postal_code",
    "last_visit_date": "last_visit",
    "conditions": "condition_codes",
    "diagnosis_codes": "condition_codes",
    "icd10_codes": "condition_codes",
    "programs": "program_codes",
    "program_enrolments": "program_codes",
}

# What each error code means, in plain words for the preview and the terminal. None repeats a value.
ERROR_MESSAGES = {
    "bad_email": "is not a valid email address",
    "bad_date": "is not a real date written YYYY-MM-DD, or is in the future",
    "unknown_sex": "must be F, M or X (or left empty)",
    "bad_condition_code": "has a code that is not an ICD-10 code such as E11 or G47.33",
    "bad_program_code": "has a program code that is not letters, digits, dashes or underscores (e.g. DPP; CPAP-RESUPPLY)",
    "bad_postal_code": "must be a US ZIP code: 5 digits, or 5+4 digits",
    "bad_state": "must be a two-letter state code",
    "missing_required": "is empty but required",
    "duplicate_in_file": "appears on an earlier row of this file",
    "already_exists": "belongs to a patient who is already here",
    "missing_column": "column is missing from the header row",
    "not_utf8": "the file is not UTF-8 text (save it as CSV UTF-8)",
    "bad_csv": "the file is not well-formed CSV (a cell is too long, or a quote is not closed)",
    "empty_file": "the file has no header row",
    "too_large": "the file is larger than 50 MB",
    "too_long": "is longer than allowed",
}

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
_STATE = re.compile(r"^[A-Z]{2}$")
_ICD10 = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
_SEXES = {"F", "M", "X"}


class ImportRefused(Exception):
    """The file has errors (then `validation` holds them), or the import is not in a state that can start."""

    def __init__(self, message: str, validation: "Validation | None" = None):
        super().__init__(message)
        self.message = message
        self.validation = validation


@dataclass(frozen=True, slots=True)
class PatientRow:
    row: int
    external_id: str
    email: str
    full_name: str
    phone: str
    street_address: str
    birth_date: date | None
    sex: str
    postal_code: str
    state: str
    last_visit: date | None
    condition_codes: tuple[str, ...]
    email_digest: str
    external_id_digest: str
    program_codes: tuple[str, ...] = ()


@dataclass
class Validation:
    total_rows: int = 0
    rows: list[PatientRow] = field(default_factory=list)  # the valid rows, in file order
    errors: list[dict] = field(default_factory=list)  # {"row", "column", "code"}, in file order
    rows_with_errors: int = 0
    ignored_columns: int = 0

    @property
    def valid_rows(self) -> int:
        return len(self.rows)

    def error_codes(self) -> dict[str, int]:
        return dict(sorted(Counter(error["code"] for error in self.errors).items()))


def error_message(error: dict) -> str:
    """A plain sentence for one stored error: the row, the column and what is wrong, never the value."""
    words = ERROR_MESSAGES.get(error["code"], error["code"])
    column = error.get("column") or ""
    if not column:
        return words[0].upper() + words[1:] + "."
    label = column.replace("_", " ")
    if error["code"] == "missing_column":
        return f"The {label} {words}."
    return f"Row {error['row']}: {label} {words}."


def _header_key(name: str) -> str:
    key = re.sub(r"[\s\-.]+", "_", (name or "").strip().lower()).strip("_")
    return HEADER_ALIASES.get(key, key)


def _strict_date(value: str, today: date) -> date | None:
    if not _DATE.match(value):
        raise ValueError
    parsed = date.fromisoformat(value)
    if parsed > today or parsed.year < 1900:
        raise ValueError
    return parsed


_PROGRAM = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,39}$")


def _program_codes(value: str) -> tuple[str, ...]:
    """Program codes, semicolon-separated (DPP; CPAP-RESUPPLY): letters, digits, dash and underscore."""
    codes = [raw.strip().upper() for raw in value.split(";") if raw.strip()]
    if not all(_PROGRAM.match(code) for code in codes):
        raise ValueError
    return tuple(dict.fromkeys(codes))


def _condition_codes(value: str) -> tuple[str, ...]:
    codes = []
    for raw in value.split(";"):
        code = raw.strip().upper()
        if not code:
            continue
        if not _ICD10.match(code):
            raise ValueError
        if "." not in code and len(code) > 3:
            code = f"{code[:3]}.{code[3:]}"  # G4733 and G47.33 are one code for segments
        codes.append(code)
    return tuple(dict.fromkeys(codes))


def _existing(digests: Sequence[str], column: str) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(digests), DIGEST_QUERY_CHUNK):
        chunk = digests[start : start + DIGEST_QUERY_CHUNK]
        if connection.vendor == "postgresql":
            # One array parameter instead of 5,000: the same query, without composing 5,000 placeholders.
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {column} FROM consent_patient WHERE {column} = ANY(%s)", [list(chunk)])
                found.update(value for (value,) in cursor.fetchall())
        else:
            found.update(Patient.objects.filter(**{f"{column}__in": chunk}).values_list(column, flat=True))
    return found


def patient_csv_validate(*, text: str) -> Validation:
    """Parse and check a whole CSV text; reads the database only to find patients that already exist."""
    try:
        return _validate(text)
    except csv.Error:
        # The csv module's message can quote the line it choked on: say only that the file is malformed.
        return _file_error("bad_csv")


def _validate(text: str) -> Validation:
    result = Validation()
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        result.errors.append({"row": 1, "column": "", "code": "empty_file"})
        return result
    keys = [_header_key(name) for name in header]
    positions = {key: index for index, key in reversed(list(enumerate(keys))) if key in COLUMNS}
    result.ignored_columns = sum(1 for key in keys if key not in COLUMNS)
    missing = [column for column in REQUIRED if column not in positions]
    if missing:
        result.errors.extend({"row": 1, "column": column, "code": "missing_column"} for column in missing)
        result.total_rows = sum(1 for cells in reader if any(cell.strip() for cell in cells))
        return result

    today = timezone.localdate()
    digest = crypto.lookup_digest
    getters = {column: positions.get(column) for column in COLUMNS}
    candidates: list[tuple[int, PatientRow | None, str, str]] = []  # every row: its digests, and it if valid
    seen_email: set[str] = set()
    seen_external: set[str] = set()
    bad_rows: set[int] = set()

    def fail(row: int, column: str, code: str) -> None:
        result.errors.append({"row": row, "column": column, "code": code})
        bad_rows.add(row)

    for line, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank lines are not rows
        result.total_rows += 1

        def cell(column: str) -> str:
            index = getters[column]
            return cells[index].strip() if index is not None and index < len(cells) else ""

        errors_before = len(result.errors)
        email = cell("email").lower()
        if not email:
            fail(line, "email", "missing_required")
        else:
            try:
                validate_email(email)
            except ValidationError:
                fail(line, "email", "bad_email")
        full_name = cell("full_name")
        if not full_name:
            fail(line, "full_name", "missing_required")
        dates: dict[str, date | None] = {}
        for column in ("birth_date", "last_visit"):
            value = cell(column)
            try:
                dates[column] = _strict_date(value, today) if value else None
            except ValueError:
                fail(line, column, "bad_date")
        sex = cell("sex").upper()
        if sex and sex not in _SEXES:
            fail(line, "sex", "unknown_sex")
        postal_code = cell("postal_code")
        if postal_code and not _ZIP.match(postal_code):
            fail(line, "postal_code", "bad_postal_code")
        state = cell("state").upper()
        if state and not _STATE.match(state):
            fail(line, "state", "bad_state")
        try:
            codes = _condition_codes(cell("condition_codes"))
        except ValueError:
            fail(line, "condition_codes", "bad_condition_code")
            codes = ()
        if any(len(code) > PatientCondition._meta.get_field("code").max_length for code in codes):
            fail(line, "condition_codes", "too_long")
        try:
            programs = _program_codes(cell("program_codes"))
        except ValueError:
            fail(line, "program_codes", "bad_program_code")
            programs = ()
        external_id = cell("external_id")
        email_ok = bool(email) and not any(
            error["column"] == "email" for error in result.errors[errors_before:]
        )
        # Duplicates are looked for even on rows with other errors, so that one upload reports everything.
        email_digest = digest(email) if email_ok else ""
        external_digest = digest(external_id) if external_id else ""
        if email_digest and email_digest in seen_email:
            fail(line, "email", "duplicate_in_file")
        if external_digest and external_digest in seen_external:
            fail(line, "external_id", "duplicate_in_file")
        if email_digest:
            seen_email.add(email_digest)
        if external_digest:
            seen_external.add(external_digest)
        patient_row = None
        if len(result.errors) == errors_before:
            patient_row = PatientRow(
                row=line,
                external_id=external_id,
                email=email,
                full_name=full_name,
                phone=cell("phone"),
                street_address=cell("street_address"),
                birth_date=dates["birth_date"],
                sex=sex,
                postal_code=postal_code,
                state=state,
                last_visit=dates["last_visit"],
                condition_codes=codes,
                email_digest=email_digest,
                external_id_digest=external_digest,
                program_codes=programs,
            )
        candidates.append((line, patient_row, email_digest, external_digest))

    existing_email = _existing([digest for _, _, digest, _ in candidates if digest], "email_digest")
    existing_external = _existing([digest for _, _, _, digest in candidates if digest], "external_id_digest")
    for line, patient_row, email_digest, external_digest in candidates:
        exists = False
        if email_digest and email_digest in existing_email:
            fail(line, "email", "already_exists")
            exists = True
        if external_digest and external_digest in existing_external:
            fail(line, "external_id", "already_exists")
            exists = True
        if patient_row is not None and not exists and line not in bad_rows:
            result.rows.append(patient_row)
    result.errors.sort(key=lambda error: (error["row"], COLUMNS.index(error["column"]) if error["column"] else -1))
    result.rows_with_errors = len(bad_rows)
    return result


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


def _decode(content: bytes) -> str | None:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _file_error(code: str) -> Validation:
    return Validation(errors=[{"row": 1, "column": "", "code": code}])


def patient_csv_read(*, content: bytes) -> tuple[str | None, Validation | None]:
    """Decode an uploaded file; a file that cannot be read gives a Validation holding one file error."""
    if len(content) > MAX_FILE_BYTES:
        return None, _file_error("too_large")
    text = _decode(content)
    if text is None:
        return None, _file_error("not_utf8")
    return text, None


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
            actor_role="" if actor else "system",
            action="patient_import.finished",
            object_type="patient_import",
            details={"source": source, "total_rows": validation.total_rows, "created": validation.valid_rows},
        )
    return validation


def _details(validation: Validation) -> dict:
    return {
        "total_rows": validation.total_rows,
        "valid_rows": validation.valid_rows,
        "rows_with_errors": validation.rows_with_errors,
        "error_codes": validation.error_codes(),
        "ignored_columns": validation.ignored_columns,
    }


def _rows_with_errors(validation: Validation) -> int:
    # A file-level problem (unreadable, a required column missing) makes every row unusable.
    if any(error["row"] == 1 for error in validation.errors):
        return max(validation.total_rows, 1)
    return validation.rows_with_errors


def patient_import_upload(*, actor, content: bytes) -> PatientImport:
    """Validate an uploaded file and store its preview. A file without errors is kept, encrypted, for the
    import; a file with errors is refused and not kept."""
    text, unreadable = patient_csv_read(content=content)
    validation = unreadable or patient_csv_validate(text=text)
    patient_import = PatientImport(
        uploaded_by=actor,
        status=PatientImport.Status.PREVIEWED,
        total_rows=validation.total_rows,
        error_count=_rows_with_errors(validation),
        errors=validation.errors[:MAX_STORED_ERRORS],
    )
    patient_import.full_clean(exclude=["file", "uploaded_by"])
    with transaction.atomic(durable=True):
        if not validation.errors and validation.total_rows:
            # Encrypted at rest like the identifiers it holds; the name says nothing about its content.
            patient_import.file.save("import.csv.enc", ContentFile(crypto.encrypt(text).encode()), save=False)
        patient_import.save(force_insert=True)
        audit_record(
            actor=actor,
            action="patient_import.previewed",
            object_type="patient_import",
            object_id=patient_import.pk,
            details=_details(validation),
        )
    return patient_import


def patient_import_start(*, actor, patient_import_id: int) -> PatientImport:
    """Start a previewed import without errors; the work runs in a Celery task enqueued after commit."""
    with transaction.atomic(durable=True):
        patient_import = PatientImport.objects.select_for_update().get(pk=patient_import_id)
        if patient_import.status != PatientImport.Status.PREVIEWED:
            raise ImportRefused("This import has already been started.")
        if patient_import.error_count or not patient_import.file or not patient_import.total_rows:
            raise ImportRefused("A file with errors, or with no rows, cannot be imported. Upload a corrected file.")
        patient_import.status = PatientImport.Status.IMPORTING
        patient_import.processed_rows = 0
        patient_import.save(update_fields=["status", "processed_rows"])
        audit_record(
            actor=actor,
            action="patient_import.started",
            object_type="patient_import",
            object_id=patient_import.pk,
            details={"total_rows": patient_import.total_rows},
        )
        transaction.on_commit(lambda: _enqueue_run(patient_import.pk))
    return patient_import


def _enqueue_run(patient_import_id: int) -> None:
    from consent.tasks import patient_import_run_task  # tasks import services; this breaks the cycle

    patient_import_run_task.delay(patient_import_id)


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


def patient_import_unfinished_list() -> list[int]:
    """Imports started and not finished: running now, or whose task was lost (a broker restart, a worker that
    died mid-import: its transaction rolled back and left the status at importing)."""
    return list(
        PatientImport.objects.filter(status=PatientImport.Status.IMPORTING).order_by("id").values_list("id", flat=True)
    )


def patient_import_rewake() -> list[int]:
    """The reconciler (Celery beat): enqueue a run for every unfinished import. A run finds the import locked
    by one in progress and returns; otherwise it does the work the lost task did not. Returns the ids."""
    unfinished = patient_import_unfinished_list()
    for patient_import_id in unfinished:
        _enqueue_run(patient_import_id)
    return unfinished


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
                action="patient_import.failed",
                object_type="patient_import",
                object_id=patient_import_id,
                details={"reason": "errors_at_import", **_details(validation)},
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
                action="patient_import.finished",
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
                action="patient_import.failed",
                object_type="patient_import",
                object_id=patient_import_id,
                details={"reason": "write_failed", "error": type(error).__name__},
            )
    _discard_file(patient_import)
    return PatientImport.objects.get(pk=patient_import_id)
