"""The patient fields journeys read (issue 14): `refill_due` (a date, future allowed) and `time_zone` (an IANA
name, "" = the organisation's), through every way patients arrive: the CSV import in create and update mode
(COPY and the SQLite path), patients_upsert and the API. Errors carry codes, never the value (R-NO-PHI-LEAK)."""
from datetime import date, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from consent import crypto
from consent.models import Patient
from consent.patient_import.validate import error_message, patient_csv_validate, time_zone_name
from consent.patient_import.write import patient_csv_import, patient_rows_write
from consent.services.patients import patients_upsert
from consent.tests.factories import patient_make
from consent.tests.patient_import.test_imports import LEAK, codes, csv_text, good_row

pytestmark = pytest.mark.django_db


def _in_days(days: int) -> str:
    return (timezone.localdate() + timedelta(days=days)).isoformat()


def test_create_mode_stores_refill_due_in_the_future_and_the_canonical_time_zone():
    soon = _in_days(20)
    text = csv_text(
        good_row(email="tz@example.org", refill_due=soon, time_zone="america/chicago"),
        good_row(email="none@example.org"),
    )

    patient_csv_import(actor=None, text=text)

    with_fields = Patient.objects.get(email_digest__in=[crypto.lookup_digest("tz@example.org")])
    assert (with_fields.refill_due, with_fields.time_zone) == (date.fromisoformat(soon), "America/Chicago")
    without = Patient.objects.get(email_digest__in=[crypto.lookup_digest("none@example.org")])
    assert (without.refill_due, without.time_zone) == (None, "")


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("refill_due", "2026/01/02", "bad_due_date"),
        ("refill_due", "2026-02-30", "bad_due_date"),
        ("refill_due", "1899-12-31", "bad_due_date"),
        ("refill_due", "far-future", "bad_due_date"),
        ("time_zone", "Mars/Olympus_Mons", "bad_time_zone"),
        ("time_zone", "EST5EDT;DROP", "bad_time_zone"),
        ("time_zone", LEAK, "bad_time_zone"),
    ],
)
def test_r_no_phi_leak_a_bad_refill_due_or_time_zone_is_named_by_row_column_and_code(column, value, code):
    text = csv_text(good_row(), good_row(**{column: value}))

    validation = patient_csv_validate(text=text)

    assert codes(validation) == [(3, column, code)]
    message = error_message(validation.errors[0])
    assert value not in message and LEAK not in message
    assert message.startswith(f"Row 3: {column.replace('_', ' ')} ")


def test_a_refill_due_more_than_ten_years_ahead_is_refused():
    text = csv_text(good_row(refill_due=_in_days(3660)), good_row(refill_due=_in_days(3650)))

    assert codes(patient_csv_validate(text=text)) == [(2, "refill_due", "bad_due_date")]


@pytest.mark.parametrize("method", ["copy", "bulk_create"])
def test_update_mode_sets_and_clears_refill_due_and_time_zone(method):
    if method == "copy" and connection.vendor != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    keep = patient_make(external_id="MRN-T1", email="t1@example.org", refill_due=date(2026, 1, 5),
                        time_zone="Europe/Paris")
    clear = patient_make(external_id="MRN-T2", email="t2@example.org", refill_due=date(2026, 1, 5),
                         time_zone="Europe/Paris")
    header = ("external_id", "email", "full_name", "refill_due", "time_zone")
    text = csv_text(
        {"external_id": "MRN-T1", "email": "t1@example.org", "full_name": "T One", "refill_due": _in_days(7),
         "time_zone": "Pacific/Honolulu"},
        {"external_id": "MRN-T2", "email": "t2@example.org", "full_name": "T Two", "refill_due": "", "time_zone": ""},
        header=header,
    )
    validation = patient_csv_validate(text=text, mode="update")
    assert validation.errors == [] and validation.update_rows == 2

    with transaction.atomic():
        patient_rows_write(rows=validation.rows, columns=validation.columns, method=method)

    keep.refresh_from_db()
    clear.refresh_from_db()
    assert (keep.refill_due, keep.time_zone, keep.full_name) == (
        date.fromisoformat(_in_days(7)), "Pacific/Honolulu", "T One"
    )
    assert (clear.refill_due, clear.time_zone) == (None, "")


def test_update_mode_leaves_refill_due_and_time_zone_alone_when_the_file_lacks_them():
    patient = patient_make(external_id="MRN-T3", email="t3@example.org", refill_due=date(2026, 3, 1),
                           time_zone="America/Denver")
    text = csv_text({"external_id": "MRN-T3", "email": "t3@example.org", "full_name": "T Three"},
                    header=("external_id", "email", "full_name"))

    patient_csv_import(actor=None, text=text, mode="update")

    patient.refresh_from_db()
    assert (patient.refill_due, patient.time_zone, patient.full_name) == (date(2026, 3, 1), "America/Denver", "T Three")


def test_header_aliases_for_the_journey_fields():
    text = csv_text({"email": "alias@example.org", "full_name": "Alias", "next_refill": _in_days(3), "timezone": "UTC"},
                    header=("email", "full_name", "next_refill", "timezone"))

    validation = patient_csv_validate(text=text)

    assert validation.errors == []
    (row,) = validation.rows
    assert (row.refill_due, row.time_zone) == (date.fromisoformat(_in_days(3)), "UTC")


def test_time_zone_names_are_matched_whatever_their_letter_case():
    assert time_zone_name("AMERICA/NEW_YORK") == "America/New_York"
    assert time_zone_name("Not/AZone") is None
    assert time_zone_name("") is None


# --- patients_upsert (the API's batch) ------------------------------------------------------------------------


def test_upsert_creates_and_updates_refill_due_and_time_zone_and_detects_unchanged():
    due = _in_days(10)
    (created,) = patients_upsert(items=[{"external_id": "MRN-U1", "email": "u1@example.org", "full_name": "U One",
                                         "refill_due": due, "time_zone": "america/phoenix"}])
    patient = Patient.objects.get(pk=created.patient_id)
    assert (created.status, patient.refill_due, patient.time_zone) == (
        "created", date.fromisoformat(due), "America/Phoenix"
    )

    (same,) = patients_upsert(items=[{"external_id": "MRN-U1", "refill_due": due, "time_zone": "America/Phoenix"}])
    (moved,) = patients_upsert(items=[{"external_id": "MRN-U1", "time_zone": "Europe/Berlin"}])
    (cleared,) = patients_upsert(items=[{"external_id": "MRN-U1", "refill_due": ""}])

    assert [same.status, moved.status, cleared.status] == ["unchanged", "updated", "updated"]
    patient.refresh_from_db()
    assert (patient.refill_due, patient.time_zone) == (None, "Europe/Berlin")


def test_r_no_phi_leak_upsert_rejects_a_bad_time_zone_and_refill_due_with_codes_only():
    (result,) = patients_upsert(items=[{"external_id": "MRN-U2", "email": "u2@example.org", "full_name": "U Two",
                                        "refill_due": "2026-13-01", "time_zone": "Atlantis/Capital"}])

    assert result.status == "rejected"
    assert [(error["field"], error["code"]) for error in result.errors] == [
        ("refill_due", "bad_due_date"), ("time_zone", "bad_time_zone")
    ]
    assert "Atlantis" not in repr(result.errors) and "2026-13-01" not in repr(result.errors)
    assert not Patient.objects.exists()
