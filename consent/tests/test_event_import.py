"""Care events from a CSV file (issue 14): every row checked first with patient_event_record's checks, errors by row,
column and code with no value echoed (R-NO-PHI-LEAK), the whole file or nothing, each event stored once per (source,
event id) (a replay is "already known", the same id with other details a conflict), one audit event with counts and
ids only, the page (compliance officers and administrators only, R-MIN-NECESSARY) and the command."""
import csv
import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit import actions
from audit.models import AuditEvent
from consent.models import PatientEvent
from consent.services import event_import
from consent.services.event_import import (
    EventImportRefused,
    event_csv_import,
    event_csv_validate,
    event_import_error_message,
)
from consent.services.events import patient_event_record
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db

LEAK = "zz.leakcheck.9917"  # a distinctive value that must never be echoed
HEADER = ("record_number", "email", "type", "occurred_at", "event_id", "source", "equipment_type", "quantity",
          "procedure_code")


def when(hours_ago: float = 2) -> str:
    return (timezone.now() - timedelta(hours=hours_ago)).replace(microsecond=0).isoformat()


def row(**overrides) -> dict:
    fields = {
        "record_number": "MRN-EV1",
        "type": "equipment.delivered",
        "occurred_at": when(),
        "event_id": "del-1",
        "equipment_type": "CPAP",
        "quantity": "1",
    }
    return fields | overrides


def csv_text(*rows: dict, header=HEADER) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for values in rows:
        writer.writerow([values.get(column, "") for column in header])
    return out.getvalue()


def codes(validation) -> list[tuple[int, str, str]]:
    return [(error["row"], error["column"], error["code"]) for error in validation.errors]


@pytest.fixture
def patients():
    return (
        patient_make(external_id="MRN-EV1", email="ev1@example.org"),
        patient_make(external_id="MRN-EV2", email="ev2@example.org"),
    )


def test_a_clean_file_records_each_event_with_its_coded_attributes_and_one_audit_event(patients):
    first, second = patients
    occurred = when(5)
    text = csv_text(
        row(occurred_at=occurred),
        row(record_number="", email="EV2@example.org", type="equipment.training_completed", event_id="trn-7",
            source="dme-office", equipment_type="CPAP", quantity=""),
    )

    validation = event_csv_import(actor=None, content=text.encode(), via="command")

    assert (validation.total_rows, validation.new_rows, validation.known, validation.errors) == (2, 2, 0, [])
    delivered = PatientEvent.objects.get(source="csv", source_event_id="del-1")
    assert (delivered.patient_id, delivered.type, delivered.attributes) == (
        first.pk, "equipment.delivered", {"equipment_type": "CPAP", "quantity": 1}
    )
    assert delivered.occurred_at.isoformat() == timezone.datetime.fromisoformat(occurred).astimezone(
        delivered.occurred_at.tzinfo
    ).isoformat()
    assert delivered.journeys_seen_at is None  # the journeys' intake routes it at its next wake
    trained = PatientEvent.objects.get(source="dme-office", source_event_id="trn-7")
    assert (trained.patient_id, trained.attributes) == (second.pk, {"equipment_type": "CPAP"})
    (audit,) = AuditEvent.objects.filter(action=actions.PATIENT_EVENTS_IMPORTED)
    assert audit.details == {
        "via": "command", "rows": 2, "new_events": 2, "already_known": 0, "rows_with_errors": 0, "error_codes": {},
        "sources": ["csv", "dme-office"], "event_ids": sorted([delivered.pk, trained.pk]),
    }
    assert audit.actor_role == actions.SYSTEM


def test_a_replayed_event_is_already_known_and_not_recorded_twice(patients):
    """Stored once per (source, event id), exactly like patient_event_record: the API's event and the file's
    row with the same source, id and details are one event."""
    first, _ = patients
    occurred = timezone.now() - timedelta(hours=3)
    patient_event_record(
        source="ehr-north", source_event_id="del-9", patient_id=first.pk, type="equipment.delivered",
        occurred_at=occurred, attributes={"equipment_type": "CPAP", "quantity": 2},
    )
    text = csv_text(
        row(event_id="del-9", source="ehr-north", occurred_at=occurred.isoformat(), quantity="2"),
        row(event_id="del-10"),
    )

    validation = event_csv_import(actor=None, content=text.encode())
    again = event_csv_import(actor=None, content=text.encode())

    assert (validation.new_rows, validation.known) == (1, 1)
    assert (again.new_rows, again.known) == (0, 2)
    assert PatientEvent.objects.count() == 2


def test_r_no_phi_leak_a_bad_file_writes_nothing_and_lists_each_problem_without_a_value(patients):
    first, _ = patients
    patient_event_record(
        source="csv", source_event_id="del-old", patient_id=first.pk, type="equipment.delivered",
        occurred_at=timezone.now() - timedelta(days=1), attributes={"equipment_type": "CPAP"},
    )
    future = (timezone.now() + timedelta(days=2)).isoformat()
    rows = [
        row(event_id="ok-1"),                                               # 2: fine, but the file is refused
        row(event_id="ok-2", record_number=LEAK),                            # 3: unknown patient
        row(event_id="ok-3", type="equipment.exploded"),                     # 4: unknown type
        row(event_id="ok-4", occurred_at="2026-11-02 09:30"),                # 5: no time zone
        row(event_id="ok-5", occurred_at=future),                            # 6: in the future
        row(event_id="ok-6", equipment_type=f"{LEAK} free text"),            # 7: not a code
        row(event_id="ok-7", type="medication.started", equipment_type=""),  # 8: needs medication_code; quantity
        row(event_id="ok-1"),                                                # 9: duplicate in the file
        row(event_id="del-old", equipment_type="WHEELCHAIR"),                # 10: same id, other details
        row(event_id="bad id with spaces"),                                  # 11
        row(event_id="ok-8", source="bad source!"),                          # 12
        row(event_id="ok-9", record_number="", email=""),                    # 13: no patient
        row(event_id="ok-10", email="ev2@example.org"),                      # 14: the two name other patients
        row(event_id="ok-11", type="equipment.delivered", equipment_type=""),  # 15: equipment_type required
        row(event_id="ok-12", quantity="0"),                                 # 16: out of range
    ]

    with pytest.raises(EventImportRefused) as refused:
        event_csv_import(actor=None, content=csv_text(*rows).encode())

    validation = refused.value.validation
    assert codes(validation) == [
        (3, "record_number", "unknown_patient"),
        (4, "type", "unknown_event_type"),
        (5, "occurred_at", "bad_occurred_at"),
        (6, "occurred_at", "occurred_in_future"),
        (7, "equipment_type", "bad_attribute_value"),
        (8, "quantity", "unknown_attribute"),
        (9, "event_id", "duplicate_in_file"),
        (10, "event_id", "event_id_conflict"),
        (11, "event_id", "bad_event_id"),
        (12, "source", "bad_source"),
        (13, "record_number", "missing_patient"),
        (14, "email", "patient_mismatch"),
        (15, "equipment_type", "missing_attribute"),
        (16, "quantity", "bad_attribute_value"),
    ]
    assert (validation.total_rows, validation.rows_with_errors) == (15, 14)
    assert PatientEvent.objects.count() == 1  # only the one recorded before
    assert not AuditEvent.objects.filter(action=actions.PATIENT_EVENTS_IMPORTED).exists()
    (checked,) = AuditEvent.objects.filter(action=actions.PATIENT_EVENT_IMPORT_CHECKED)
    assert checked.details["outcome"] == "refused" and checked.details["rows_with_errors"] == 14
    messages = " ".join(event_import_error_message(error) for error in validation.errors)
    for secret in (LEAK, "exploded", "free text", "WHEELCHAIR", "bad source", "spaces", "ev2@example.org"):
        assert secret not in messages
        assert secret not in str(checked.details)
    assert "Row 8: quantity is not an attribute this event type accepts" in messages


def test_a_missing_patient_or_required_column_and_an_unknown_column_refuse_the_file():
    text = csv_text(row(), header=("type", "occurred_at", "equipment_type", f"{LEAK}_column"))

    validation = event_csv_validate(text=text)

    assert codes(validation) == [
        (1, "", "unknown_column"), (1, "event_id", "missing_column"), (1, "", "missing_patient_column")
    ]
    assert event_import_error_message(validation.errors[0]) == (
        "Column 4 of the header row is not a column of an event file (see the list of columns)."
    )
    assert LEAK not in " ".join(event_import_error_message(error) for error in validation.errors)


def test_unreadable_files_are_refused_without_writing(patients):
    for content, code in ((b"\xff\xfe\x00bad", "not_utf8"), (b"", "empty_file")):
        with pytest.raises(EventImportRefused) as refused:
            event_csv_import(actor=None, content=content)
        assert codes(refused.value.validation) == [(1, "", code)]
    assert not PatientEvent.objects.exists()


def test_too_many_rows_refuse_the_file(patients, monkeypatch):
    monkeypatch.setattr(event_import, "MAX_ROWS", 2)

    validation = event_csv_validate(text=csv_text(row(event_id="a"), row(event_id="b"), row(event_id="c")))

    assert codes(validation) == [(1, "", "too_many_rows")]


def test_a_dry_run_writes_nothing_and_audits_the_check(patients):
    validation = event_csv_import(actor=None, content=csv_text(row()).encode(), dry_run=True)

    assert (validation.new_rows, validation.known) == (1, 0)
    assert not PatientEvent.objects.exists()
    (checked,) = AuditEvent.objects.filter(action=actions.PATIENT_EVENT_IMPORT_CHECKED)
    assert checked.details["outcome"] == "checked" and checked.details["new_events"] == 1


def test_an_event_recorded_between_the_check_and_the_insert_is_known_after_one_recheck(patients, monkeypatch):
    """A concurrent writer wins the unique constraint: nothing of the file is written, the file is checked once
    more, and the event the other writer stored is then already known."""
    first, _ = patients
    occurred = timezone.now() - timedelta(hours=1)
    text = csv_text(row(event_id="race-1", occurred_at=occurred.isoformat()), row(event_id="race-2"))
    patient_event_record(
        source="csv", source_event_id="race-1", patient_id=first.pk, type="equipment.delivered",
        occurred_at=occurred, attributes={"equipment_type": "CPAP", "quantity": 1},
    )
    real, calls = event_import._existing_events, []

    def not_yet_recorded(keys):
        # The first pass (its check and its re-check in the transaction) runs as if race-1 were not there yet.
        calls.append(len(keys))
        return {} if len(calls) <= 2 else real(keys)

    monkeypatch.setattr(event_import, "_existing_events", not_yet_recorded)

    validation = event_csv_import(actor=None, content=text.encode())

    assert calls == [2, 2, 2, 1]  # the second pass finds race-1 recorded: only race-2 is re-checked
    assert (validation.new_rows, validation.known) == (1, 1)
    assert PatientEvent.objects.filter(source_event_id__startswith="race-").count() == 2
    assert AuditEvent.objects.get(action=actions.PATIENT_EVENTS_IMPORTED).details["new_events"] == 1


# --- the page --------------------------------------------------------------------------------------------------


def _upload(client, text: str, action: str = "record"):
    return client.post(
        "/consent/imports/events/",
        {"action": action, "file": SimpleUploadedFile("events.csv", text.encode(), content_type="text/csv")},
    )


def test_the_page_checks_then_records_and_says_how_many_were_new_and_known(verified_client, patients):
    officer = verified_client.sign_in(role="compliance officer")
    text = csv_text(row(), row(event_id="del-2"))

    page = verified_client.get("/consent/imports/events/")
    checked = _upload(verified_client, text, action="check")
    recorded = _upload(verified_client, text)
    replayed = _upload(verified_client, text)

    assert page.status_code == 200 and "equipment.training_completed" in page.content.decode()
    assert "2 events would be recorded, 0 already known. Nothing was written" in checked.content.decode()
    assert "2 events recorded, 0 already known." in recorded.content.decode()
    assert "0 events recorded, 2 already known." in replayed.content.decode()
    assert PatientEvent.objects.count() == 2
    imported = AuditEvent.objects.filter(action=actions.PATIENT_EVENTS_IMPORTED).order_by("id")
    assert [event.actor_id for event in imported] == [officer.pk, officer.pk]
    assert [event.details["new_events"] for event in imported] == [2, 0]


def test_r_no_phi_leak_the_page_lists_problems_by_row_and_column_without_values(verified_client, patients):
    verified_client.sign_in(role="administrator")

    response = _upload(verified_client, csv_text(row(), row(event_id="x-2", record_number=LEAK)))

    body = response.content.decode()
    assert response.status_code == 200
    assert "no event was recorded" in body and "unknown_patient" in body
    assert "Row 3: record number does not belong to any patient here." in body
    assert LEAK not in body
    assert not PatientEvent.objects.exists()


def test_the_patient_import_page_links_to_the_event_import(verified_client):
    verified_client.sign_in(role="compliance officer")

    assert 'href="/consent/imports/events/"' in verified_client.get("/consent/imports/").content.decode()


def test_r_min_necessary_a_marketer_gets_404_and_nothing_is_recorded(verified_client, patients):
    verified_client.sign_in(role="marketer")

    assert verified_client.get("/consent/imports/events/").status_code == 404
    assert _upload(verified_client, csv_text(row())).status_code == 404
    assert not PatientEvent.objects.exists()


def test_upload_without_a_file_shows_a_clear_error(verified_client):
    verified_client.sign_in(role="compliance officer")

    response = verified_client.post("/consent/imports/events/", {"action": "record"})

    assert response.status_code == 200 and "Choose a CSV file to upload." in response.content.decode()


# --- the command -----------------------------------------------------------------------------------------------


def test_import_events_command_reports_errors_and_writes_nothing(tmp_path, capsys, patients):
    path = tmp_path / "events.csv"
    path.write_text(csv_text(row(), row(event_id="c-2", record_number=LEAK)))

    with pytest.raises(CommandError, match="2 rows, 1 with errors"):
        call_command("import_events", str(path))

    out = capsys.readouterr().out
    assert "3\trecord_number\tunknown_patient" in out and LEAK not in out
    assert not PatientEvent.objects.exists()


def test_import_events_command_dry_run_then_import(tmp_path, capsys, patients):
    path = tmp_path / "events.csv"
    path.write_text(csv_text(row(), row(event_id="c-3")))

    call_command("import_events", str(path), "--dry-run")
    assert "2 new events, 0 already known. Nothing was written." in capsys.readouterr().out
    assert not PatientEvent.objects.exists()

    call_command("import_events", str(path))
    assert "2 events recorded, 0 already known." in capsys.readouterr().out
    assert PatientEvent.objects.count() == 2
