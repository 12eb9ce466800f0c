"""Parse and validate an EHR/CRM CSV export, and check one patient's fields (a CSV row or an API item) with the
same rules and the same error codes; no writes."""
from __future__ import annotations

import csv
import io
import re
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import lru_cache

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

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
    "refill_due",
    "time_zone",
    "language",  # en or es: the patient's mail and forms (issue 17); empty is English
)


REQUIRED = ("email", "full_name")


class Mode:
    """What a CSV import does with a row whose patient is already here (PatientImport.Mode holds the same
    values): CREATE refuses it (already_exists); UPDATE matches rows by external_id, updates the patients found
    and creates the others."""

    CREATE = "create"
    UPDATE = "update"
    ALL = (CREATE, UPDATE)


# Columns every row must fill, by mode: updates are keyed by the clinic's record number.
REQUIRED_BY_MODE = {Mode.CREATE: REQUIRED, Mode.UPDATE: ("external_id", *REQUIRED)}


# The free-text identifiers' longest accepted values (the API's schema declares the same limits).
MAX_LENGTHS = {"external_id": 64, "email": 254, "full_name": 200, "phone": 40, "street_address": 300}
MAX_CODES = 50  # condition codes, and program codes, per patient
CONDITION_CODE_MAX_LENGTH = PatientCondition._meta.get_field("code").max_length
PROGRAM_CODE_MAX_LENGTH = 40


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
    "refill_due_date": "refill_due",
    "next_refill": "refill_due",
    "next_refill_date": "refill_due",
    "timezone": "time_zone",
    "tz": "time_zone",
    "preferred_language": "language",
    "lang": "language",
    "conditions": "condition_codes",
    "diagnosis_codes": "condition_codes",
    "icd10_codes": "condition_codes",
    "programs": "program_codes",
    "program_enrolments": "program_codes",
}


# What each error code means, in plain words for the preview and the terminal. None repeats a value. English here, as
# the integration API returns them; error_message() translates them for the preview.
ERROR_MESSAGES = {
    "bad_email": gettext_noop("is not a valid email address"),
    "bad_date": gettext_noop("is not a real date written YYYY-MM-DD, or is in the future"),
    "bad_due_date": gettext_noop("is not a real date written YYYY-MM-DD, from 1900 to ten years from today"),
    "bad_time_zone": gettext_noop("is not an IANA time zone name such as America/New_York (or left empty)"),
    "unknown_sex": gettext_noop("must be F, M or X (or left empty)"),
    "bad_language": gettext_noop("must be en (English) or es (Spanish), or left empty (English)"),
    "bad_condition_code": gettext_noop("has a code that is not an ICD-10 code such as E11 or G47.33"),
    "bad_program_code": gettext_noop(
        "has a program code that is not letters, digits, dashes or underscores (e.g. DPP; CPAP-RESUPPLY)"
    ),
    "bad_postal_code": gettext_noop("must be a US ZIP code: 5 digits, or 5+4 digits"),
    "bad_state": gettext_noop("must be a two-letter state code"),
    "missing_required": gettext_noop("is empty but required"),
    "duplicate_in_file": gettext_noop("appears on an earlier row of this file"),
    "already_exists": gettext_noop("belongs to a patient who is already here"),
    "missing_column": gettext_noop("column is missing from the header row"),
    "not_utf8": gettext_noop("the file is not UTF-8 text (save it as CSV UTF-8)"),
    "bad_csv": gettext_noop("the file is not well-formed CSV (a cell is too long, or a quote is not closed)"),
    "empty_file": gettext_noop("the file has no header row"),
    "too_large": gettext_noop("the file is larger than 50 MB"),
    "too_long": gettext_noop("is longer than allowed"),
    "bad_text": gettext_noop("contains control characters (such as a NUL or a line break) that are not allowed"),
    "email_in_use": gettext_noop("belongs to another patient (matched by a different external id)"),
    "duplicate_in_batch": gettext_noop("appears on an earlier item of this batch"),
}


# [0-9], not \d: \d also matches Arabic-Indic, Devanagari and other digits, which are no US ZIP code or date.
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


_ZIP = re.compile(r"^[0-9]{5}(-[0-9]{4})?$")


_STATE = re.compile(r"^[A-Z]{2}$")


_ICD10 = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")


_SEXES = {"F", "M", "X"}


class ImportRefused(Exception):
    """The file has errors (then `validation` holds them), or the import is not in a state that can start."""

    def __init__(self, message: str, validation: Validation | None = None):
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
    patient_id: int | None = None  # the patient this row updates; None: a patient to create
    refill_due: date | None = None
    time_zone: str = ""  # an IANA name; "" is the organisation's
    language: str = "en"  # consent.models.Language


@dataclass
class Validation:
    mode: str = Mode.CREATE
    columns: tuple[str, ...] = COLUMNS  # the recognised columns of the header: what an update sets
    total_rows: int = 0
    rows: list[PatientRow] = field(default_factory=list)  # the valid rows, in file order
    errors: list[dict] = field(default_factory=list)  # {"row", "column", "code"}, in file order
    rows_with_errors: int = 0
    ignored_columns: int = 0

    @property
    def valid_rows(self) -> int:
        return len(self.rows)

    @property
    def create_rows(self) -> int:
        return sum(1 for row in self.rows if row.patient_id is None)

    @property
    def update_rows(self) -> int:
        return len(self.rows) - self.create_rows

    def error_codes(self) -> dict[str, int]:
        return dict(sorted(Counter(error["code"] for error in self.errors).items()))


def error_message(error: dict) -> str:
    """A plain sentence for one stored error: the row, the column and what is wrong, never the value."""
    words = gettext(ERROR_MESSAGES[error["code"]]) if error["code"] in ERROR_MESSAGES else error["code"]
    column = error.get("column") or ""
    if not column:
        return words[0].upper() + words[1:] + "."
    label = column.replace("_", " ")
    if error["code"] == "missing_column":
        return gettext("The %(column)s column is missing from the header row.") % {"column": label}
    return gettext("Row %(row)s: %(column)s %(problem)s.") % {"row": error["row"], "column": label, "problem": words}


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


# A refill or supply date is in the future more often than not; further ahead than this it is a typing error.
DUE_DATE_HORIZON = timedelta(days=3653)


def _due_date(value: str, today: date) -> date:
    if not _DATE.match(value):
        raise ValueError
    parsed = date.fromisoformat(value)
    if parsed > today + DUE_DATE_HORIZON or parsed.year < 1900:
        raise ValueError
    return parsed


@lru_cache(maxsize=1)
def _time_zones() -> dict[str, str]:
    # available_timezones() walks the tz database on disk: once per process, not once per row.
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def time_zone_name(value: str) -> str | None:
    """The IANA name of a time zone as written ("America/New_York", any letter case), or None when it is not one."""
    return _time_zones().get(value.strip().lower()) if value else None


_PROGRAM = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,39}$")


# Control characters have no place in a name, an address or an id, and PostgreSQL refuses NUL outright.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _code_list(value: object) -> list[str]:
    """Codes as a CSV cell holds them ("E11; G47.33") or as an API item lists them (["E11", "G47.33"])."""
    if isinstance(value, str):
        return [raw.strip().upper() for raw in value.split(";") if raw.strip()]
    return [str(raw).strip().upper() for raw in value or () if str(raw).strip()]


def _program_codes(value: object) -> tuple[str, ...]:
    """Program codes, semicolon-separated (DPP; CPAP-RESUPPLY): letters, digits, dash and underscore."""
    codes = _code_list(value)
    if not all(_PROGRAM.match(code) for code in codes):
        raise ValueError
    return tuple(dict.fromkeys(codes))


def _condition_codes(value: object) -> tuple[str, ...]:
    codes = []
    for code in _code_list(value):
        if not _ICD10.match(code):
            raise ValueError
        if "." not in code and len(code) > 3:
            code = f"{code[:3]}.{code[3:]}"  # G4733 and G47.33 are one code for segments
        codes.append(code)
    return tuple(dict.fromkeys(codes))


_TEXT_COLUMNS = ("external_id", "full_name", "phone", "street_address")
# What a file may write for the patient's language, and the code it means.
_LANGUAGES = {"en": "en", "english": "en", "inglés": "en", "ingles": "en",
              "es": "es", "spanish": "es", "español": "es", "espanol": "es"}
_DATE_COLUMNS = ("birth_date", "last_visit", "refill_due")


def patient_fields_check(
    raw: Mapping[str, object], *, today: date, required: Iterable[str] = ()
) -> tuple[dict, list[tuple[str, str]]]:
    """Check and normalise the given fields of one patient: a CSV row's cells or an API item's fields, with the
    same rules and error codes for both. `raw` maps column names (COLUMNS) to what was sent: strings, and for
    condition and program codes a semicolon-separated string or a list of strings. Only the columns in `raw` are
    checked and returned; a column of `required` that is absent or empty is `missing_required`, and so is an
    email or a full name given empty (neither can be cleared). Returns (values, errors): values normalised as
    they are stored (email lower-cased, dates parsed, codes upper-cased and de-duplicated) for the columns
    without error, errors as (column, code) in COLUMNS order. No value is ever part of an error."""
    values: dict = {}
    errors: list[tuple[str, str]] = []
    required = set(required)
    for column in COLUMNS:
        if column not in raw:
            if column in required:
                errors.append((column, "missing_required"))
            continue
        value = raw[column]
        if column in ("condition_codes", "program_codes"):
            try:
                codes = _condition_codes(value) if column == "condition_codes" else _program_codes(value)
            except ValueError:
                errors.append((column, "bad_condition_code" if column == "condition_codes" else "bad_program_code"))
                continue
            longest = CONDITION_CODE_MAX_LENGTH if column == "condition_codes" else PROGRAM_CODE_MAX_LENGTH
            if len(codes) > MAX_CODES or any(len(code) > longest for code in codes):
                errors.append((column, "too_long"))
                continue
            values[column] = codes
            continue
        text = "" if value is None else str(value).strip()
        if not text:
            if column in required or column in ("email", "full_name"):
                errors.append((column, "missing_required"))
                continue
            values[column] = None if column in _DATE_COLUMNS else ("en" if column == "language" else "")
            continue
        if column == "email":
            text = text.lower()
            if len(text) > MAX_LENGTHS["email"]:
                errors.append((column, "too_long"))
                continue
            try:
                validate_email(text)
            except ValidationError:
                errors.append((column, "bad_email"))
                continue
        elif column in _TEXT_COLUMNS:
            if _CONTROL.search(text):
                errors.append((column, "bad_text"))
                continue
            if len(text) > MAX_LENGTHS[column]:
                errors.append((column, "too_long"))
                continue
        elif column in ("birth_date", "last_visit"):
            try:
                text = _strict_date(text, today)
            except ValueError:
                errors.append((column, "bad_date"))
                continue
        elif column == "refill_due":
            try:
                text = _due_date(text, today)
            except ValueError:
                errors.append((column, "bad_due_date"))
                continue
        elif column == "time_zone":
            name = time_zone_name(text)
            if name is None:
                errors.append((column, "bad_time_zone"))
                continue
            text = name
        elif column == "language":
            text = _LANGUAGES.get(text.lower())
            if text is None:
                errors.append((column, "bad_language"))
                continue
        elif column == "sex":
            text = text.upper()
            if text not in _SEXES:
                errors.append((column, "unknown_sex"))
                continue
        elif column == "postal_code":
            if not _ZIP.match(text):
                errors.append((column, "bad_postal_code"))
                continue
        elif column == "state":
            text = text.upper()
            if not _STATE.match(text):
                errors.append((column, "bad_state"))
                continue
        values[column] = text
    return values, errors


def _existing(digests: Sequence[str], column: str) -> set[str]:
    return set(_existing_ids(digests, column))


def _existing_ids(digests: Sequence[str], column: str) -> dict[str, tuple[int, str]]:
    """{digest: (patient id, its email digest)} of the patients whose `column` digest is among `digests`."""
    found: dict[str, tuple[int, str]] = {}
    for start in range(0, len(digests), DIGEST_QUERY_CHUNK):
        chunk = digests[start : start + DIGEST_QUERY_CHUNK]
        if connection.vendor == "postgresql":
            # One array parameter instead of 5,000: the same query, without composing 5,000 placeholders.
            with connection.cursor() as cursor:
                # NOT (... = ''): the partial unique index on external_id_digest is usable only when the query says
                # so (PostgreSQL cannot prove it from a list of more than 100 values).
                cursor.execute(
                    f"SELECT {column}, id, email_digest FROM consent_patient "
                    f"WHERE {column} = ANY(%s) AND NOT ({column} = '')",
                    [list(chunk)],
                )
                found.update((value, (pk, email)) for value, pk, email in cursor.fetchall())
        else:
            rows = Patient.objects.filter(**{f"{column}__in": chunk}).values_list(column, "id", "email_digest")
            found.update((value, (pk, email)) for value, pk, email in rows)
    return found


def patient_csv_validate(*, text: str, mode: str = Mode.CREATE) -> Validation:
    """Parse and check a whole CSV text; reads the database only to find the patients that already exist.

    mode "create": a row whose email or external id belongs to a patient already here is `already_exists`.
    mode "update": external_id is required on every row; a row whose external id is a patient's updates that
    patient (`PatientRow.patient_id`), any other row creates one; an email that belongs to a patient other than
    the row's is `email_in_use`."""
    if mode not in Mode.ALL:
        raise ValueError(f"unknown import mode {mode!r}")
    try:
        return _validate(text, mode)
    except csv.Error:
        # The csv module's message can quote the line it choked on: say only that the file is malformed.
        return _file_error("bad_csv", mode)


def _validate(text: str, mode: str) -> Validation:
    result = Validation(mode=mode)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        result.errors.append({"row": 1, "column": "", "code": "empty_file"})
        return result
    keys = [_header_key(name) for name in header]
    positions = {key: index for index, key in reversed(list(enumerate(keys))) if key in COLUMNS}
    result.ignored_columns = sum(1 for key in keys if key not in COLUMNS)
    result.columns = tuple(column for column in COLUMNS if column in positions)
    required = REQUIRED_BY_MODE[mode]
    missing = [column for column in required if column not in positions]
    if missing:
        result.errors.extend({"row": 1, "column": column, "code": "missing_column"} for column in missing)
        result.total_rows = sum(1 for cells in reader if any(cell.strip() for cell in cells))
        return result

    today = timezone.localdate()
    digest = crypto.lookup_digest
    getters = [(column, positions.get(column)) for column in COLUMNS]
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
        width = len(cells)
        raw = {
            column: (cells[index].strip() if index is not None and index < width else "")
            for column, index in getters
        }
        values, errors = patient_fields_check(raw, today=today, required=required)
        for column, code in errors:
            fail(line, column, code)
        email = values.get("email", "")
        external_id = raw["external_id"]
        # Duplicates are looked for even on rows with other errors, so that one upload reports everything.
        email_digest = digest(email) if email else ""
        external_digest = digest(external_id) if external_id else ""
        duplicate = False
        if email_digest and email_digest in seen_email:
            fail(line, "email", "duplicate_in_file")
            duplicate = True
        if external_digest and external_digest in seen_external:
            fail(line, "external_id", "duplicate_in_file")
            duplicate = True
        if email_digest:
            seen_email.add(email_digest)
        if external_digest:
            seen_external.add(external_digest)
        patient_row = None
        if not errors and not duplicate:
            patient_row = patient_row_make(values, row=line, email_digest=email_digest, external_digest=external_digest)
        candidates.append((line, patient_row, email_digest, external_digest))

    emails = [email for _, _, email, _ in candidates if email]
    externals = [external for _, _, _, external in candidates if external]
    if mode == Mode.CREATE:
        _resolve_create(result, candidates, emails, externals, fail, bad_rows)
    else:
        _resolve_update(result, candidates, emails, externals, fail, bad_rows)
    result.errors.sort(key=lambda error: (error["row"], COLUMNS.index(error["column"]) if error["column"] else -1))
    result.rows_with_errors = len(bad_rows)
    return result


def patient_row_make(
    values: dict, *, row: int, email_digest: str, external_digest: str, patient_id: int | None = None
) -> PatientRow:
    """The row of checked values (patient_fields_check) the writer takes: a CSV line, or an API item (row 0)."""
    return PatientRow(
        row=row,
        external_id=values.get("external_id", ""),
        email=values.get("email", ""),
        full_name=values.get("full_name", ""),
        phone=values.get("phone", ""),
        street_address=values.get("street_address", ""),
        birth_date=values.get("birth_date"),
        sex=values.get("sex", ""),
        postal_code=values.get("postal_code", ""),
        state=values.get("state", ""),
        last_visit=values.get("last_visit"),
        condition_codes=tuple(values.get("condition_codes", ())),
        program_codes=tuple(values.get("program_codes", ())),
        refill_due=values.get("refill_due"),
        time_zone=values.get("time_zone", ""),
        language=values.get("language") or "en",
        email_digest=email_digest,
        external_id_digest=external_digest,
        patient_id=patient_id,
    )


def _resolve_create(result, candidates, emails, externals, fail, bad_rows) -> None:
    existing_email = _existing(emails, "email_digest")
    existing_external = _existing(externals, "external_id_digest")
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


def _resolve_update(result, candidates, emails, externals, fail, bad_rows) -> None:
    by_external = _existing_ids(externals, "external_id_digest")
    by_email = _existing_ids(emails, "email_digest")
    for line, patient_row, email_digest, external_digest in candidates:
        patient_id = by_external[external_digest][0] if external_digest in by_external else None
        holder = by_email.get(email_digest) if email_digest else None
        if holder is not None and holder[0] != patient_id:
            # Another patient has this address: updating or creating would take it from them.
            fail(line, "email", "email_in_use")
            continue
        if patient_row is not None and line not in bad_rows:
            if patient_id is not None:
                patient_row = replace(patient_row, patient_id=patient_id)
            result.rows.append(patient_row)


def _decode(content: bytes) -> str | None:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _file_error(code: str, mode: str = Mode.CREATE) -> Validation:
    return Validation(mode=mode, errors=[{"row": 1, "column": "", "code": code}])


def patient_csv_read(*, content: bytes) -> tuple[str | None, Validation | None]:
    """Decode an uploaded file; a file that cannot be read gives a Validation holding one file error."""
    if len(content) > MAX_FILE_BYTES:
        return None, _file_error("too_large")
    text = _decode(content)
    if text is None:
        return None, _file_error("not_utf8")
    return text, None


def validation_details(validation: Validation) -> dict:
    """Counts and error codes for the audit trail, never a value. An update-mode file also says how many rows
    would create a patient and how many would update one."""
    extra = {}
    if validation.mode == Mode.UPDATE:
        extra = {"mode": validation.mode, "new_rows": validation.create_rows, "update_rows": validation.update_rows}
    return {
        **extra,
        "total_rows": validation.total_rows,
        "valid_rows": validation.valid_rows,
        "rows_with_errors": validation.rows_with_errors,
        "error_codes": validation.error_codes(),
        "ignored_columns": validation.ignored_columns,
    }
