"""Patient import in update mode (issue 13): the EHR's nightly export is re-importable. Rows are matched by
external_id: a match is updated (identifiers re-encrypted, R-SEC-ENCRYPT-REST; codes replaced), other rows
create a patient; an email that belongs to another patient is refused; still the whole file or nothing; errors
and audit details never hold a value (R-NO-PHI-LEAK)."""
from datetime import date
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from consent import crypto
from consent.models import Patient, PatientCondition, PatientImport
from consent.patient_import import write
from consent.patient_import.validate import error_message, patient_csv_validate
from consent.patient_import.write import patient_csv_import, patient_import_run
from consent.services import imports
from consent.tests.factories import patient_make
from consent.tests.patient_import.test_imports import LEAK, codes, csv_text, good_row

pytestmark = pytest.mark.django_db


def known(external_id: str, email: str, **fields) -> Patient:
    return patient_make(external_id=external_id, email=email, **fields)


def test_a_row_with_a_known_external_id_updates_that_patient_and_others_are_created():
    patient = known("MRN-A", "a@example.org", condition_codes=["I10"], program_codes=["DPP"])
    rows = [
        good_row(external_id="mrn-a", email="a@example.org", full_name="A Renamed", condition_codes="E11;G4733"),
        good_row(external_id="MRN-NEW", email="new@example.org"),
    ]

    validation = patient_csv_validate(text=csv_text(*rows), mode="update")

    assert validation.errors == []
    assert [(row.external_id, row.patient_id) for row in validation.rows] == [("mrn-a", patient.pk), ("MRN-NEW", None)]
    assert (validation.create_rows, validation.update_rows) == (1, 1)

    patient_csv_import(actor=None, text=csv_text(*rows), mode="update")

    patient.refresh_from_db()
    assert (patient.full_name, patient.external_id, patient.state, patient.birth_year) == ("A Renamed", "mrn-a", "MA", 1950)
    assert sorted(patient.conditions.values_list("code", flat=True)) == ["E11", "G47.33"]  # replaced
    assert list(patient.programs.values_list("code", flat=True)) == []  # the file's program_codes cell was empty
    assert Patient.objects.count() == 2
    event = AuditEvent.objects.get(action="patient_import.finished")
    assert event.details == {"source": "command", "total_rows": 2, "created": 1, "mode": "update", "updated": 1}


def test_r_sec_encrypt_rest_updated_identifiers_are_re_encrypted_and_digests_recomputed():
    patient = known("MRN-E", "old@example.org", phone="555-0000")
    rows = [good_row(external_id="MRN-E", email="New.Email@example.org", phone="555-9999", street_address="9 New Rd")]

    patient_csv_import(actor=None, text=csv_text(*rows), mode="update")

    patient.refresh_from_db()
    assert (patient.email, patient.phone, patient.street_address) == ("new.email@example.org", "555-9999", "9 New Rd")
    assert patient.email_digest == crypto.lookup_digest("new.email@example.org")
    assert not Patient.objects.filter(email_digest=crypto.lookup_digest("old@example.org")).exists()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT email, phone, street_address, full_name, external_id FROM consent_patient WHERE id = %s",
            [patient.pk],
        )
        raw = cursor.fetchone()
    assert all(value.startswith(f"hm1.{crypto.current_key_id()}.") for value in raw)
    assert "555-9999" not in str(raw) and "new.email@example.org" not in str(raw)


def test_columns_the_file_lacks_are_left_as_they_are():
    patient = known("MRN-C", "c@example.org", birth_year=1940, postal_code="10001", condition_codes=["I10"])
    text = "external_id,email,full_name,state\nMRN-C,c@example.org,C Person,ny\n"

    patient_csv_import(actor=None, text=text, mode="update")

    patient.refresh_from_db()
    assert (patient.state, patient.full_name, patient.birth_year, patient.postal_code) == ("NY", "C Person", 1940, "10001")
    assert list(patient.conditions.values_list("code", flat=True)) == ["I10"]


def test_r_no_phi_leak_an_email_of_another_patient_is_email_in_use_and_nothing_is_written():
    known("MRN-1", "one@example.org")
    other = known("MRN-2", "two@example.org")
    rows = [
        good_row(external_id="MRN-1", email="TWO@example.org"),  # takes patient 2's address
        good_row(external_id="MRN-3", email="two@example.org", full_name="Leaky Person"),  # a new row, same
        good_row(external_id="MRN-4"),
    ]

    validation = patient_csv_validate(text=csv_text(*rows), mode="update")

    assert codes(validation) == [
        (2, "email", "email_in_use"), (3, "email", "duplicate_in_file"), (3, "email", "email_in_use")
    ]
    message = error_message(validation.errors[0])
    assert message == "Row 2: email belongs to another patient (matched by a different external id)."
    with pytest.raises(Exception, match="nothing was imported"):
        patient_csv_import(actor=None, text=csv_text(*rows), mode="update")
    assert Patient.objects.count() == 2
    other.refresh_from_db()
    assert other.email == "two@example.org"


def test_external_id_is_required_on_every_row_in_update_mode():
    no_column = patient_csv_validate(text="email,full_name\na@example.org,A\n", mode="update")
    empty_cell = patient_csv_validate(text=csv_text(good_row(), good_row(external_id="")), mode="update")

    assert codes(no_column) == [(1, "external_id", "missing_column")]
    assert codes(empty_cell) == [(3, "external_id", "missing_required")]


def test_update_mode_is_whole_or_nothing_when_a_batch_fails_midway():
    patient = known("MRN-W", "w@example.org", state="NY")
    officer = staff_make(role="compliance officer")
    rows = [good_row(external_id="MRN-W", email="w@example.org", state="CA")] + [good_row() for _ in range(4)]
    patient_import = imports.patient_import_upload(actor=officer, content=csv_text(*rows).encode(), mode="update")
    assert (patient_import.mode, patient_import.created_count, patient_import.updated_count) == ("update", 4, 1)
    imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)
    name = "_update_copy" if connection.vendor == "postgresql" else "_update_bulk"

    with mock.patch.object(write, name, side_effect=RuntimeError("disk full")):
        result = patient_import_run(patient_import_id=patient_import.pk, batch_size=2)

    assert (result.status, result.created_count, result.updated_count) == ("failed", 0, 0)
    assert Patient.objects.count() == 1  # the four creates, written before the update failed, rolled back
    patient.refresh_from_db()
    assert patient.state == "NY"


def test_an_update_import_runs_through_the_task_with_counts():
    patient = known("MRN-T", "t@example.org", condition_codes=["I10"])
    officer = staff_make(role="administrator")
    rows = [good_row(external_id="MRN-T", email="t@example.org", condition_codes="J44.9"), good_row(), good_row()]
    patient_import = imports.patient_import_upload(actor=officer, content=csv_text(*rows).encode(), mode="update")
    imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)

    result = patient_import_run(patient_import_id=patient_import.pk, batch_size=2)

    assert (result.status, result.created_count, result.updated_count, result.processed_rows) == ("done", 2, 1, 3)
    assert list(PatientCondition.objects.filter(patient=patient).values_list("code", flat=True)) == ["J44.9"]
    finished = AuditEvent.objects.get(action="patient_import.finished")
    assert finished.details == {"total_rows": 3, "created": 2, "mode": "update", "updated": 1}


def test_bulk_update_path_updates_the_same_way_as_copy():
    """The SQLite demo's path: bulk_update, with the fields' own encryption."""
    from django.db import transaction

    patient = known("MRN-B", "b@example.org", condition_codes=["I10"])
    validation = patient_csv_validate(
        text=csv_text(good_row(external_id="MRN-B", email="b2@example.org", condition_codes="E11")), mode="update"
    )
    with transaction.atomic():
        write.patient_rows_write(rows=validation.rows, columns=validation.columns, method="bulk_create")

    patient.refresh_from_db()
    assert (patient.email, patient.birth_date, patient.birth_year, patient.last_visit) == (
        "b2@example.org", "1950-02-03", 1950, date(2024, 5, 6)
    )
    assert patient.email_digest == crypto.lookup_digest("b2@example.org")
    assert list(patient.conditions.values_list("code", flat=True)) == ["E11"]


def test_import_patients_command_update_flag(tmp_path, capsys):
    known("MRN-CMD", "cmd@example.org")
    path = tmp_path / "export.csv"
    path.write_text(csv_text(good_row(external_id="MRN-CMD", email="cmd@example.org"), good_row()))

    with pytest.raises(CommandError):  # without --update, the known patient is an error
        call_command("import_patients", str(path))
    call_command("import_patients", str(path), "--update", "--dry-run")
    call_command("import_patients", str(path), "--update")

    out = capsys.readouterr().out
    assert "Dry run: 2 rows, all valid (1 new, 1 updated). Nothing was written." in out
    assert "Imported 2 rows: 1 new, 1 updated." in out
    assert Patient.objects.count() == 2


# --- the staff page -------------------------------------------------------------------------------------------


def test_the_upload_page_offers_both_modes_with_a_line_each(verified_client):
    verified_client.sign_in(role="compliance officer")

    page = verified_client.get("/consent/imports/").content.decode()

    assert 'name="mode" value="create"' in page and 'name="mode" value="update"' in page
    assert "Add new patients only" in page and "Add and update (re-import an export)" in page
    assert "rows are matched by external_id" in page


def test_an_update_upload_previews_then_finishes_with_n_new_m_updated(verified_client):
    officer = verified_client.sign_in(role="compliance officer")
    patient = known("MRN-V", "v@example.org")
    rows = [good_row(external_id="MRN-V", email="v@example.org", full_name="V Renamed"), good_row(), good_row()]

    response = verified_client.post(
        "/consent/imports/",
        {"mode": "update", "file": SimpleUploadedFile("e.csv", csv_text(*rows).encode())},
    )

    patient_import = PatientImport.objects.get()
    assert patient_import.mode == "update"
    page = verified_client.get(response.url).content.decode()
    assert "The file holds 2 new, 1 updated." in page and "Import 2 new, 1 updated" in page
    assert Patient.objects.count() == 1
    imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)
    patient_import_run(patient_import_id=patient_import.pk)
    done = verified_client.get(response.url).content.decode()
    assert "Imported 2 new, 1 updated." in done
    patient.refresh_from_db()
    assert patient.full_name == "V Renamed"


def test_an_unknown_mode_is_refused_by_the_form(verified_client):
    verified_client.sign_in(role="compliance officer")

    response = verified_client.post(
        "/consent/imports/",
        {"mode": "merge", "file": SimpleUploadedFile("e.csv", csv_text(good_row()).encode())},
    )

    assert response.status_code == 200
    assert "Choose one of the two modes." in response.content.decode()
    assert PatientImport.objects.count() == 0


def test_r_no_phi_leak_update_mode_errors_are_shown_without_values(verified_client):
    verified_client.sign_in(role="compliance officer")
    known("MRN-L", "l@example.org")
    text = csv_text(good_row(external_id="MRN-L", email=LEAK), good_row(external_id="MRN-Z", email="L@example.org"))

    response = verified_client.post(
        "/consent/imports/", {"mode": "update", "file": SimpleUploadedFile("e.csv", text.encode())}
    )

    page = verified_client.get(response.url).content.decode()
    assert "Row 3: email belongs to another patient" in page
    assert LEAK not in page and "l@example.org" not in page
    assert not PatientImport.objects.get().file
