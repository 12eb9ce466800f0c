"""Parse and validate an EHR/CRM CSV export; no writes."""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection
from django.utils import timezone

from consent import crypto
from consent.models import Patient, PatientCondition

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


def validation_details(validation: Validation) -> dict:
    return {
        "total_rows": validation.total_rows,
        "valid_rows": validation.valid_rows,
        "rows_with_errors": validation.rows_with_errors,
        "error_codes": validation.error_codes(),
        "ignored_columns": validation.ignored_columns,
    }
