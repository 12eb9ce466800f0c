"""Care events from a CSV file (issue 14: journeys trigger on them), for systems that cannot call the API.

The file: a header row, then one event per row. Columns (any order, names in any letter case):

- `record_number` (the patient's external id, as on the patient import) or `email`: which patient; at least one
  of the two columns, and on each row at least one of the two filled (both filled: they must name one patient);
- `type`: an event type of the vocabulary (consent.events);
- `occurred_at`: when it happened, ISO 8601 with a time zone (2026-11-02T09:30:00-05:00, or ...Z);
- `event_id`: the sending system's own id of the event;
- `source` (optional): the sending system's slug, "csv" when the column is missing or the cell is empty;
- one column per attribute name of consent.events.ATTRIBUTES; an empty cell is an absent attribute.

Decision, as for patients (consent.services.imports): **a file with any error is refused whole.** Every row is
checked first, with the checks patient_event_record makes (consent.services.events.patient_event_check: the type,
its attributes, the time; the patient; the source and the event id) plus the file's own (a patient that is not
here, the same (source, event id) twice in the file). Errors are {"row", "column", "code"}, rows numbered as a
spreadsheet shows them (the header is row 1), and never hold a value (R-NO-PHI-LEAK). Only a file without errors
is written, in one durable transaction with one audit event (counts and ids only).

Each event is stored once per (source, event id), exactly as patient_event_record stores it: an event already
recorded with the same details is a replay, counted as "already known" and not an error; the same id with other
details is `event_id_conflict`. The check runs again inside the writing transaction, and a concurrent writer
that wins a race on the unique constraint makes the write re-check the file once (its row is then known).

Rows are written with bulk_create, not one patient_event_record call each: the same checks ran for every row
above, the table's constraints back them, and one audit event records the import (the API's route audits each
event). The journeys' intake routes the new events (they arrive with `journeys_seen_at` empty) at its next wake.
"""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext, gettext_noop

from audit import actions
from audit.services import audit_record
from consent import crypto
from consent.events import ATTRIBUTES, EVENT_ID_PATTERN, EVENT_TYPES, AttributeKind
from consent.models import Patient, PatientEvent
from consent.services.events import patient_event_check

MAX_FILE_BYTES = 10 * 1024 * 1024
# A file is checked and written in the request that uploads it: beyond this, split it (or use the API's batch).
MAX_ROWS = 10_000
DEFAULT_SOURCE = "csv"
BATCH_SIZE = 2_000
QUERY_CHUNK = 2_000

PATIENT_COLUMNS = ("record_number", "email")
COLUMNS = ("record_number", "email", "type", "occurred_at", "event_id", "source", *ATTRIBUTES)
REQUIRED = ("type", "occurred_at", "event_id")

HEADER_ALIASES = {
    "external_id": "record_number",
    "mrn": "record_number",
    "email_address": "email",
    "event_type": "type",
    "occurred": "occurred_at",
    "source_event_id": "event_id",
}

# What each code means, in plain words. None repeats a value.
ERROR_MESSAGES = {
    "missing_column": gettext_noop("column is missing from the header row"),
    "missing_patient_column": gettext_noop("the header row needs a record_number column or an email column"),
    "unknown_column": gettext_noop("is not a column of an event file (see the list of columns)"),
    "duplicate_column": gettext_noop("appears twice in the header row"),
    "missing_required": gettext_noop("is empty but required"),
    "missing_patient": gettext_noop(
        "is empty, and so is the other patient column: each row names its patient by record_number or email"
    ),
    "unknown_patient": gettext_noop("does not belong to any patient here"),
    "patient_mismatch": gettext_noop("belongs to another patient than the record number on this row"),
    "bad_source": gettext_noop("is not a slug: letters, digits, dashes and underscores, at most 50"),
    "bad_event_id": gettext_noop("must be 1 to 100 letters, digits and . _ : / - characters"),
    "duplicate_in_file": gettext_noop("appears on an earlier row of this file, from the same source"),
    "event_id_conflict": gettext_noop("is already recorded from this source with other details; use a new id"),
    "unknown_event_type": gettext_noop("is not an event type of the vocabulary"),
    "bad_occurred_at": gettext_noop(
        "must be a date and time in ISO 8601 with a time zone, e.g. 2026-11-02T09:30:00-05:00"
    ),
    "occurred_in_future": gettext_noop("is in the future: an event cannot have happened yet"),
    "unknown_attribute": gettext_noop("is not an attribute this event type accepts (leave it empty)"),
    "bad_attribute_value": gettext_noop("is not a valid code for this attribute"),
    "missing_attribute": gettext_noop("is required for this event type"),
    "too_many_attributes": gettext_noop("the row has more attributes than an event may hold"),
    "bad_attributes": gettext_noop("the attributes are not valid"),
    "too_many_rows": gettext_noop("the file has more than %(max_rows)s events: split it into smaller files"),
    "not_utf8": gettext_noop("the file is not UTF-8 text (save it as CSV UTF-8)"),
    "bad_csv": gettext_noop("the file is not well-formed CSV (a cell is too long, or a quote is not closed)"),
    "empty_file": gettext_noop("the file has no header row"),
    "too_large": gettext_noop("the file is larger than %(max_megabytes)s MB"),
}

_SOURCE = re.compile(r"^[-a-zA-Z0-9_]{1,50}$")
_INTEGER = re.compile(r"^[0-9]{1,10}$")


class EventImportRefused(Exception):
    """The file has errors (`validation` holds them); nothing was written."""

    def __init__(self, message: str, validation: EventValidation):
        super().__init__(message)
        self.message = message
        self.validation = validation


@dataclass(frozen=True)
class EventRow:
    row: int
    source: str
    event_id: str
    patient_id: int
    type: str
    occurred_at: datetime
    attributes: dict


@dataclass
class EventValidation:
    total_rows: int = 0
    rows: list[EventRow] = field(default_factory=list)  # the events to record, in file order
    known: int = 0  # rows that replay an event already recorded (same source, id and details)
    errors: list[dict] = field(default_factory=list)  # {"row", "column", "code"}, in file order
    rows_with_errors: int = 0
    recorded_ids: list[int] = field(default_factory=list)  # after the write: the new events' ids

    @property
    def new_rows(self) -> int:
        return len(self.rows)

    def error_codes(self) -> dict[str, int]:
        return dict(sorted(Counter(error["code"] for error in self.errors).items()))


def event_import_error_message(error: dict) -> str:
    """A plain sentence for one error: the row, the column and what is wrong, never the value."""
    words = gettext(ERROR_MESSAGES[error["code"]]) if error["code"] in ERROR_MESSAGES else error["code"]
    if error["code"] in ("too_many_rows", "too_large"):
        words %= {"max_rows": f"{MAX_ROWS:,}", "max_megabytes": MAX_FILE_BYTES // (1024 * 1024)}
    column = error.get("column") or ""
    if error["code"] in ("unknown_column", "duplicate_column"):
        return gettext("Column %(position)s of the header row %(problem)s.") % {
            "position": error.get("position", "?"),
            "problem": words,
        }
    if error["code"] == "missing_column":
        return gettext("The %(column)s column is missing from the header row.") % {"column": column}
    if not column:
        return words[0].upper() + words[1:] + "."
    if error["row"] == 1:
        return gettext("The %(column)s %(problem)s.") % {"column": column, "problem": words}
    return gettext("Row %(row)s: %(column)s %(problem)s.") % {
        "row": error["row"],
        "column": column.replace("_", " "),
        "problem": words,
    }


def _header_key(name: str) -> str:
    key = re.sub(r"[\s\-.]+", "_", (name or "").strip().lower()).strip("_")
    return HEADER_ALIASES.get(key, key)


def _file_error(code: str) -> EventValidation:
    return EventValidation(errors=[{"row": 1, "column": "", "code": code}], rows_with_errors=1)


def event_csv_read(*, content: bytes) -> tuple[str | None, EventValidation | None]:
    """Decode an uploaded file; a file that cannot be read gives a validation holding one file error."""
    if len(content) > MAX_FILE_BYTES:
        return None, _file_error("too_large")
    try:
        return content.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        return None, _file_error("not_utf8")


def _occurred_at(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None and parsed.utcoffset() is not None else None


def _attribute_value(name: str, text: str):
    """A cell as the API's JSON would carry it: whole numbers for integer attributes, strings otherwise."""
    if ATTRIBUTES[name].kind == AttributeKind.INTEGER and _INTEGER.match(text):
        return int(text)
    return text


def _check_errors(error: ValidationError, attribute_columns: list[str]) -> list[tuple[str, str]]:
    """patient_event_check's refusal as (column, code): its field "attributes.<name>" is that attribute's
    column; "attributes" as a whole is named by the row's first attribute column."""
    found = []
    items = error.error_dict.items() if hasattr(error, "error_dict") else [("", error.error_list)]
    for name, errors in items:
        column = name.removeprefix("attributes.")
        if column == "attributes":
            column = attribute_columns[0] if attribute_columns else ""
        for item in errors:
            found.append((column, item.code or "invalid"))
    return found


@dataclass
class _Candidate:
    line: int
    source: str
    event_id: str
    type: str
    occurred_at: datetime | None
    attributes: dict
    external_digest: str
    email_digest: str
    ok: bool  # no error so far


def _patients_by(column: str, digests: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    values = sorted(digests)
    for start in range(0, len(values), QUERY_CHUNK):
        chunk = values[start : start + QUERY_CHUNK]
        found.update(Patient.objects.filter(**{f"{column}__in": chunk}).values_list(column, "id"))
    return found


def _existing_events(keys: set[tuple[str, str]]) -> dict[tuple[str, str], PatientEvent]:
    by_source: dict[str, list[str]] = {}
    for source, event_id in keys:
        by_source.setdefault(source, []).append(event_id)
    found: dict[tuple[str, str], PatientEvent] = {}
    for source, ids in sorted(by_source.items()):
        ids.sort()
        for start in range(0, len(ids), QUERY_CHUNK):
            for event in PatientEvent.objects.filter(source=source, source_event_id__in=ids[start : start + QUERY_CHUNK]):
                found[(event.source, event.source_event_id)] = event
    return found


def _same(event: PatientEvent, row: EventRow) -> bool:
    # What patient_event_record compares when the same (source, event id) comes again.
    return (
        event.patient_id == row.patient_id
        and event.type == row.type
        and event.occurred_at == row.occurred_at
        and event.attributes == row.attributes
    )


def event_csv_validate(*, text: str) -> EventValidation:
    """Parse and check a whole file; reads the database only (patients, events already recorded)."""
    try:
        return _validate(text)
    except csv.Error:
        # The csv module's message can quote the line it choked on: say only that the file is malformed.
        return _file_error("bad_csv")


def _validate(text: str) -> EventValidation:
    result = EventValidation()
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        return _file_error("empty_file")
    keys = [_header_key(name) for name in header]
    positions: dict[str, int] = {}
    header_errors = []
    for index, key in enumerate(keys):
        if not key:
            continue  # an unnamed trailing column, as spreadsheets write them
        if key not in COLUMNS:
            header_errors.append({"row": 1, "column": "", "code": "unknown_column", "position": index + 1})
        elif key in positions:
            header_errors.append({"row": 1, "column": "", "code": "duplicate_column", "position": index + 1})
        else:
            positions[key] = index
    header_errors += [{"row": 1, "column": column, "code": "missing_column"} for column in REQUIRED if column not in positions]
    if not any(column in positions for column in PATIENT_COLUMNS):
        header_errors.append({"row": 1, "column": "", "code": "missing_patient_column"})
    if header_errors:
        result.errors = header_errors
        result.total_rows = sum(1 for cells in reader if any(cell.strip() for cell in cells))
        result.rows_with_errors = max(result.total_rows, 1)
        return result

    attribute_names = [name for name in ATTRIBUTES if name in positions]
    bad_rows: set[int] = set()

    def fail(line: int, column: str, code: str) -> None:
        result.errors.append({"row": line, "column": column, "code": code})
        bad_rows.add(line)

    row_errors: list[tuple[str, str]] = []  # the current row's, as (column, code)

    def bad(column: str, code: str) -> None:
        row_errors.append((column, code))

    candidates: list[_Candidate] = []
    seen: set[tuple[str, str]] = set()
    digest = crypto.lookup_digest
    for line, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        result.total_rows += 1
        if result.total_rows > MAX_ROWS:
            return _file_error("too_many_rows")

        width = len(cells)
        given = {column: (cells[index].strip() if index < width else "") for column, index in positions.items()}
        row_errors.clear()

        record_number, email = given.get("record_number", ""), given.get("email", "").lower()
        if not record_number and not email:
            bad("record_number" if "record_number" in positions else "email", "missing_patient")
        source = given.get("source", "") or DEFAULT_SOURCE
        if not _SOURCE.match(source):
            bad("source", "bad_source")
        event_id = given.get("event_id", "")
        if not event_id:
            bad("event_id", "missing_required")
        elif not re.fullmatch(EVENT_ID_PATTERN, event_id):
            bad("event_id", "bad_event_id")
        type_ = given.get("type", "")
        event_type = EVENT_TYPES.get(type_)
        if not type_:
            bad("type", "missing_required")
        elif event_type is None:
            bad("type", "unknown_event_type")
        occurred_text = given.get("occurred_at", "")
        occurred_at = _occurred_at(occurred_text) if occurred_text else None
        if not occurred_text:
            bad("occurred_at", "missing_required")
        elif occurred_at is None:
            bad("occurred_at", "bad_occurred_at")
        attributes: dict = {}
        for name in attribute_names:
            value = given.get(name, "")
            if not value:
                continue
            if event_type is not None and name not in event_type.attributes:
                bad(name, "unknown_attribute")
                continue
            converted = _attribute_value(name, value)
            if not ATTRIBUTES[name].accepts(converted):
                bad(name, "bad_attribute_value")
                continue
            attributes[name] = converted
        if not row_errors:
            # The one check the API's route makes too: whatever it refuses, the file refuses.
            try:
                attributes = patient_event_check(type=type_, occurred_at=occurred_at, attributes=attributes)
            except ValidationError as error:
                for column, code in _check_errors(error, list(attributes)):
                    bad(column, code)
        key = (source, event_id)
        if event_id and key in seen:
            bad("event_id", "duplicate_in_file")
        seen.add(key)
        for column, code in row_errors:
            fail(line, column, code)
        candidates.append(
            _Candidate(
                line=line,
                source=source,
                event_id=event_id,
                type=type_,
                occurred_at=occurred_at,
                attributes=attributes,
                external_digest=digest(record_number) if record_number else "",
                email_digest=digest(email) if email else "",
                ok=not row_errors,
            )
        )

    by_external = _patients_by("external_id_digest", {c.external_digest for c in candidates if c.external_digest})
    by_email = _patients_by("email_digest", {c.email_digest for c in candidates if c.email_digest})
    resolved: list[tuple[_Candidate, int]] = []
    for candidate in candidates:
        patient_id = None
        if candidate.external_digest:
            patient_id = by_external.get(candidate.external_digest)
            if patient_id is None:
                fail(candidate.line, "record_number", "unknown_patient")
                continue
        if candidate.email_digest:
            by_address = by_email.get(candidate.email_digest)
            if by_address is None:
                fail(candidate.line, "email", "unknown_patient")
                continue
            if patient_id is not None and by_address != patient_id:
                fail(candidate.line, "email", "patient_mismatch")
                continue
            patient_id = by_address
        if candidate.ok and patient_id is not None:
            resolved.append((candidate, patient_id))

    rows = [
        EventRow(
            row=c.line, source=c.source, event_id=c.event_id, patient_id=patient_id, type=c.type,
            occurred_at=c.occurred_at, attributes=c.attributes,
        )
        for c, patient_id in resolved
        if c.line not in bad_rows
    ]
    _against_recorded(result, rows, fail)
    order = {column: index for index, column in enumerate(COLUMNS)}
    result.errors.sort(key=lambda error: (error["row"], order.get(error["column"], -1)))
    result.rows_with_errors = len(bad_rows)
    return result


def _against_recorded(result: EventValidation, rows: list[EventRow], fail) -> None:
    """Split the valid rows into new events and replays of recorded ones; a recorded id with other details is
    event_id_conflict."""
    existing = _existing_events({(row.source, row.event_id) for row in rows})
    result.rows, result.known = [], 0
    for row in rows:
        event = existing.get((row.source, row.event_id))
        if event is None:
            result.rows.append(row)
        elif _same(event, row):
            result.known += 1
        else:
            fail(row.row, "event_id", "event_id_conflict")


def _details(validation: EventValidation) -> dict:
    return {
        "rows": validation.total_rows,
        "new_events": validation.new_rows,
        "already_known": validation.known,
        "rows_with_errors": validation.rows_with_errors,
        "error_codes": validation.error_codes(),
    }


def event_csv_import(
    *, actor, content: bytes, dry_run: bool = False, via: str = "upload", _retry: bool = True
) -> EventValidation:
    """Check a file and, when it has no error and this is no dry run, record its new events in one durable
    transaction with one audit event (counts and event ids, never a value). A file with errors raises
    EventImportRefused (holding the validation) after auditing the refusal; a dry run audits the check."""
    text, unreadable = event_csv_read(content=content)
    validation = unreadable or event_csv_validate(text=text)
    del text
    if validation.errors or dry_run:
        audit_record(
            actor=actor,
            actor_role="" if actor else actions.SYSTEM,
            action=actions.PATIENT_EVENT_IMPORT_CHECKED,
            object_type="patient_event_import",
            details={"via": via, "outcome": "refused" if validation.errors else "checked", **_details(validation)},
        )
        if validation.errors:
            raise EventImportRefused("The file has errors; no event was recorded.", validation)
        return validation
    try:
        with transaction.atomic(durable=True):
            # Again, inside the transaction: an event recorded since the check is known (or a conflict) now.
            known_before = validation.known
            _against_recorded(validation, validation.rows, lambda line, column, code: validation.errors.append(
                {"row": line, "column": column, "code": code}
            ))
            validation.known += known_before
            if validation.errors:
                validation.rows_with_errors = len({error["row"] for error in validation.errors})
                raise EventImportRefused("The file has errors; no event was recorded.", validation)
            created = PatientEvent.objects.bulk_create(
                [
                    PatientEvent(
                        patient_id=row.patient_id,
                        type=row.type,
                        occurred_at=row.occurred_at,
                        attributes=row.attributes,
                        source=row.source,
                        source_event_id=row.event_id,
                    )
                    for row in validation.rows
                ],
                batch_size=BATCH_SIZE,
            )
            validation.recorded_ids = [event.pk for event in created]
            audit_record(
                actor=actor,
                actor_role="" if actor else actions.SYSTEM,
                action=actions.PATIENT_EVENTS_IMPORTED,
                object_type="patient_event_import",
                details={
                    "via": via,
                    **_details(validation),
                    "sources": sorted({row.source for row in validation.rows}),
                    "event_ids": validation.recorded_ids,
                },
            )
    except IntegrityError:
        # Another writer recorded one of these (source, event id) pairs between our check and our insert:
        # nothing of this file was written; check it once more (that event is now known, or a conflict).
        if not _retry:
            raise
        return event_csv_import(actor=actor, content=content, dry_run=dry_run, via=via, _retry=False)
    except EventImportRefused as refusal:
        audit_record(
            actor=actor,
            actor_role="" if actor else actions.SYSTEM,
            action=actions.PATIENT_EVENT_IMPORT_CHECKED,
            object_type="patient_event_import",
            details={"via": via, "outcome": "refused", **_details(refusal.validation)},
        )
        raise
    return validation
