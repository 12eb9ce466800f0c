"""Patient import: a preview with per-row errors before anything is written, the whole file or nothing, fast
bulk writes with identifiers encrypted at rest, and no cell value in any report (R-NO-PHI-LEAK)."""
import csv
import io
import itertools
import logging
from datetime import date
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from conftest import browser_sign_in, screenshot
from consent import crypto
from consent.models import Patient, PatientCondition, PatientImport
from consent.patient_import import write
from consent.patient_import.validate import COLUMNS, ImportRefused, patient_csv_read, patient_csv_validate
from consent.patient_import.write import (
    COPY_PATIENT_COLUMNS,
    RUN_LOCK_CLASS,
    _write_bulk_create,
    _write_copy,
    patient_import_run,
    patient_rows_write,
)
from consent.periodic import patient_import_rewake_task
from consent.selectors.patients import patient_import_unfinished_list
from consent.services import imports
from consent.tasks import patient_import_run_task
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db

LEAK = "zz.leakcheck.4471@@nowhere"  # a distinctive bad value that must never be echoed anywhere
_serial = itertools.count(1)


def good_row(**overrides) -> dict:
    n = next(_serial)
    row = {
        "external_id": f"MRN-{n:05d}",
        "email": f"Person.{n}@Example.org",
        "full_name": f"Person Number {n}",
        "phone": "555-0100",
        "street_address": f"{n} Main Street",
        "birth_date": "1950-02-03",
        "sex": "F",
        "postal_code": "02139",
        "state": "ma",
        "last_visit": "2024-05-06",
        "condition_codes": "E11;G4733",
        "program_codes": "",
    }
    return row | overrides


def csv_text(*rows: dict, header=COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(column, "") for column in header])
    return out.getvalue()


def upload(client, text: str):
    return client.post(
        "/consent/imports/", {"file": SimpleUploadedFile("export.csv", text.encode(), content_type="text/csv")}
    )


def codes(validation) -> list[tuple[int, str, str]]:
    return [(error["row"], error["column"], error["code"]) for error in validation.errors]


# --- validation: every error code, named by row and column -------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("email", "not-an-email", "bad_email"),
        ("email", "", "missing_required"),
        ("full_name", "   ", "missing_required"),
        ("birth_date", "03/02/1950", "bad_date"),
        ("birth_date", "1950-02-30", "bad_date"),
        ("birth_date", "2999-01-01", "bad_date"),
        ("last_visit", "20240506", "bad_date"),
        ("sex", "Q", "unknown_sex"),
        ("condition_codes", "E11;not a code", "bad_condition_code"),
        ("program_codes", "DPP;two words", "bad_program_code"),
        ("postal_code", "ABCDE", "bad_postal_code"),
        ("state", "Massachusetts", "bad_state"),
    ],
)
def test_each_bad_cell_is_reported_by_row_column_and_code(column, value, code):
    text = csv_text(good_row(), good_row(**{column: value}))

    validation = patient_csv_validate(text=text)

    assert codes(validation) == [(3, column, code)]
    assert (validation.total_rows, validation.valid_rows, validation.rows_with_errors) == (2, 1, 1)


def test_duplicates_within_the_file_are_found_case_insensitively_by_email_and_by_external_id():
    first = good_row(email="Same@Example.org", external_id="MRN-X")
    text = csv_text(first, good_row(email="same@example.ORG"), good_row(external_id="MRN-X"))

    validation = patient_csv_validate(text=text)

    assert codes(validation) == [(3, "email", "duplicate_in_file"), (4, "external_id", "duplicate_in_file")]
    assert [row.row for row in validation.rows] == [2]


def test_patients_already_here_are_found_by_email_digest_and_external_id_digest():
    patient_make(email="known@example.org", external_id="MRN-KNOWN")
    text = csv_text(good_row(email="KNOWN@example.org"), good_row(external_id="MRN-KNOWN"), good_row())

    validation = patient_csv_validate(text=text)

    assert codes(validation) == [(2, "email", "already_exists"), (3, "external_id", "already_exists")]
    assert validation.valid_rows == 1


def test_a_header_without_required_columns_and_an_unreadable_file_are_refused():
    no_email = patient_csv_validate(text=csv_text(good_row(), header=("external_id", "full_name")))
    latin1, unreadable = patient_csv_read(content="name,email\nJosé,a@b.org\n".encode("latin-1"))
    empty = patient_csv_validate(text="")
    malformed = patient_csv_validate(text="email,full_name\n" + "x" * 200_000 + ",A\n")

    assert codes(no_email) == [(1, "email", "missing_column")]
    assert latin1 is None and codes(unreadable) == [(1, "", "not_utf8")]
    assert codes(empty) == [(1, "", "empty_file")]
    assert codes(malformed) == [(1, "", "bad_csv")]


def test_a_missing_required_column_makes_every_row_unusable_in_the_preview(verified_client):
    verified_client.sign_in(role="compliance officer")

    response = upload(verified_client, csv_text(good_row(), good_row(), header=("external_id", "email")))

    patient_import = PatientImport.objects.get()
    assert (patient_import.total_rows, patient_import.error_count) == (2, 2)
    page = verified_client.get(response.url).content.decode()
    assert "The full name column is missing from the header row." in page
    assert "Import 2 patients" not in page and Patient.objects.count() == 0


def test_header_aliases_and_extra_columns_are_accepted():
    text = (
        "MRN,E-mail Address,Patient Name,DOB,Gender,ZIP,Favourite colour\n"
        "A9,a9@example.org,A Nine,1960-01-02,m,02139,blue\n"
    )

    validation = patient_csv_validate(text=text)

    assert validation.errors == [] and validation.ignored_columns == 1
    (row,) = validation.rows
    assert (row.external_id, row.email, row.birth_date, row.sex) == ("A9", "a9@example.org", date(1960, 1, 2), "M")


def test_copy_writes_every_column_of_the_patient_table():
    assert set(COPY_PATIENT_COLUMNS) == {field.column for field in Patient._meta.concrete_fields}


# --- the browser flow -------------------------------------------------------------------------------------


def test_r_sec_encrypt_rest_valid_file_is_previewed_then_imported_whole(
    verified_client, django_capture_on_commit_callbacks
):
    """R-SEC-ENCRYPT-REST, R-SEC-AUDIT: preview writes no patient; the import creates exactly the rows, with
    encrypted identifiers, digests, coded attributes and condition codes, and audits counts only."""
    officer = verified_client.sign_in(role="compliance officer")
    rows = [good_row(email=f"Row.{n}@Example.org", full_name=f"Row Person {n}") for n in range(5)]
    rows[0] |= {"birth_date": "1948-11-30", "sex": "x", "postal_code": "02139-1234"}
    rows[0] |= {"condition_codes": "e11; G47.33;E11", "program_codes": "dpp; CPAP-RESUPPLY"}

    response = upload(verified_client, csv_text(*rows))

    patient_import = PatientImport.objects.get()
    assert response.status_code == 302 and response.url == f"/consent/imports/{patient_import.pk}/"
    page = verified_client.get(response.url).content.decode()
    assert "No problems found. Nothing has been written yet." in page
    assert "Import 5 patients" in page
    assert Patient.objects.count() == 0
    assert patient_import.file and "Row.0" not in patient_import.file.read().decode()  # kept encrypted

    with mock.patch("consent.tasks.patient_import_run_task.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            response = verified_client.post(f"/consent/imports/{patient_import.pk}/start/")
    delay.assert_called_once_with(patient_import.pk)
    assert "Importing" in verified_client.get(response.url).content.decode()

    patient_import_run_task(patient_import.pk)

    patient_import.refresh_from_db()
    assert (patient_import.status, patient_import.created_count, patient_import.processed_rows) == ("done", 5, 5)
    assert not patient_import.file  # the uploaded file is gone once imported
    assert Patient.objects.count() == 5
    first = Patient.objects.get(email_digest=crypto.lookup_digest("row.0@example.org"))
    assert (first.email, first.full_name) == ("row.0@example.org", "Row Person 0")
    assert first.external_id == rows[0]["external_id"]
    assert (first.birth_date, first.birth_year, first.sex, first.postal_code, first.state) == (
        "1948-11-30", 1948, "X", "02139-1234", "MA"
    )
    assert first.last_visit == date(2024, 5, 6)
    assert first.external_id_digest == crypto.lookup_digest(rows[0]["external_id"])
    assert sorted(first.conditions.values_list("code", flat=True)) == ["E11", "G47.33"]
    assert sorted(first.programs.values_list("code", flat=True)) == ["CPAP-RESUPPLY", "DPP"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT email, full_name, birth_date FROM consent_patient WHERE id = %s", [first.pk])
        raw = cursor.fetchone()
    assert all(value.startswith(f"hm1.{crypto.current_key_id()}.") for value in raw)
    assert "row.0@example.org" not in raw and "Row Person 0" not in raw
    events = {event.action: event for event in AuditEvent.objects.filter(object_type="patient_import")}
    assert set(events) == {"patient_import.previewed", "patient_import.started", "patient_import.finished"}
    assert events["patient_import.previewed"].actor == officer
    assert events["patient_import.previewed"].details["valid_rows"] == 5
    assert events["patient_import.finished"].details == {"total_rows": 5, "created": 5}
    assert not AuditEvent.objects.filter(action="patient.created").exists()  # one event per import, not per row
    done = verified_client.get(response.url).content.decode()
    assert "Imported 5 patients" in done


def test_r_no_phi_leak_file_with_errors_is_refused_and_no_value_is_echoed(verified_client, caplog):
    """R-NO-PHI-LEAK: errors name row, column and problem; the bad value appears nowhere (page, stored
    errors, audit, logs), and nothing is written or kept."""
    verified_client.sign_in(role="compliance officer")
    text = csv_text(good_row(), good_row(email=LEAK, full_name="Leaky Person"), good_row(sex="?"))

    with caplog.at_level(logging.DEBUG):
        response = upload(verified_client, text)
        page = verified_client.get(response.url).content.decode()

    patient_import = PatientImport.objects.get()
    assert patient_import.errors == [
        {"row": 3, "column": "email", "code": "bad_email"},
        {"row": 4, "column": "sex", "code": "unknown_sex"},
    ]
    assert (patient_import.total_rows, patient_import.error_count) == (3, 2)
    assert "Row 3: email is not a valid email address." in page
    assert "This file was not imported: nothing was written." in page
    assert "Import 1 patient" not in page
    stored = str(patient_import.errors) + str(list(AuditEvent.objects.values_list("details", flat=True)))
    for secret in (LEAK, "Leaky Person"):
        assert secret not in page and secret not in stored and secret not in caplog.text
    assert not patient_import.file  # a refused file is not kept
    assert Patient.objects.count() == 0

    response = verified_client.post(f"/consent/imports/{patient_import.pk}/start/", follow=True)

    assert "cannot be imported" in response.content.decode()
    assert Patient.objects.count() == 0
    assert PatientImport.objects.get().status == "previewed"
    assert not AuditEvent.objects.filter(action="patient_import.started").exists()


def test_a_failure_midway_leaves_no_patient_at_all(verified_client):
    """Nothing half imported: the second batch fails after the first was written; the transaction takes both."""
    officer = verified_client.sign_in(role="compliance officer")
    content = csv_text(*[good_row() for _ in range(5)]).encode()
    patient_import = imports.patient_import_upload(actor=officer, content=content)
    imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)
    name = "_write_copy" if connection.vendor == "postgresql" else "_write_bulk_create"
    real = getattr(write, name)
    calls = []

    def fail_on_second_batch(batch, now):
        calls.append(len(batch))
        if len(calls) == 2:
            assert Patient.objects.count() == 2  # the first batch really was written
            raise RuntimeError("disk full")
        return real(batch, now)

    with mock.patch.object(write, name, side_effect=fail_on_second_batch):
        result = patient_import_run(patient_import_id=patient_import.pk, batch_size=2)

    assert calls == [2, 2]
    assert (result.status, result.created_count) == ("failed", 0)
    assert Patient.objects.count() == 0 and PatientCondition.objects.count() == 0
    failed = AuditEvent.objects.get(action="patient_import.failed")
    assert failed.details == {"reason": "write_failed", "error": "RuntimeError"}
    page = verified_client.get(f"/consent/imports/{patient_import.pk}/").content.decode()
    assert "failed and nothing was written" in page


def test_patients_added_after_the_preview_make_the_import_fail_whole():
    officer = staff_make(role="compliance officer")
    patient_import = imports.patient_import_upload(
        actor=officer, content=csv_text(good_row(), good_row(email="late@example.org")).encode()
    )
    imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)
    patient_make(email="Late@example.org")

    result = patient_import_run(patient_import_id=patient_import.pk)

    assert result.status == "failed"
    assert result.errors == [{"row": 3, "column": "email", "code": "already_exists"}]
    assert Patient.objects.count() == 1  # only the one made above


def test_running_the_task_twice_imports_once():
    officer = staff_make(role="administrator")
    patient_import = imports.patient_import_upload(actor=officer, content=csv_text(good_row(), good_row()).encode())
    imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)

    patient_import_run_task(patient_import.pk)
    patient_import_run_task(patient_import.pk)

    assert Patient.objects.count() == 2
    assert AuditEvent.objects.filter(action="patient_import.finished").count() == 1
    with pytest.raises(ImportRefused):
        imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)


def test_the_reconciler_runs_an_import_whose_task_was_lost():
    """The task message was lost (a broker restart; here: the commit hook never ran): the import stays
    "importing" until the reconciler enqueues it again; then it is written once, and nothing is left to wake."""
    officer = staff_make(role="compliance officer")
    patient_import = imports.patient_import_upload(actor=officer, content=csv_text(good_row(), good_row()).encode())
    imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)
    assert patient_import_unfinished_list() == [patient_import.pk]

    with mock.patch.object(patient_import_run_task, "delay", side_effect=patient_import_run_task) as enqueued:
        patient_import_rewake_task()

    enqueued.assert_called_once_with(patient_import.pk)
    assert PatientImport.objects.get(pk=patient_import.pk).status == "done"
    assert Patient.objects.count() == 2
    assert patient_import_unfinished_list() == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the run lock is a PostgreSQL advisory lock")
def test_a_run_while_another_run_holds_the_import_returns_without_writing_or_failing():
    """The reconciler may enqueue an import that is still being written: that second run must not write, wait,
    or record a failure; the first run finishes it."""
    officer = staff_make(role="compliance officer")
    patient_import = imports.patient_import_upload(actor=officer, content=csv_text(good_row()).encode())
    imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:  # the run in progress, elsewhere
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [RUN_LOCK_CLASS, patient_import.pk])

        result = patient_import_run(patient_import_id=patient_import.pk)

        assert result.status == "importing"
        assert Patient.objects.count() == 0
        assert not AuditEvent.objects.filter(action__in=["patient_import.failed", "patient_import.finished"]).exists()
    finally:
        # The holder finishes: it releases its lock before its connection goes. (A bare close() leaves the release
        # to the server backend's exit, which can lag behind the next statement on a loaded machine.)
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_CLASS, patient_import.pk])
        other.close()

    assert patient_import_run(patient_import_id=patient_import.pk).status == "done"
    assert Patient.objects.count() == 1


def test_bulk_create_path_writes_the_same_patients_as_copy():
    """The SQLite demo's path: bulk_create, with the fields' own encryption."""
    validation = patient_csv_validate(
        text=csv_text(good_row(email="bulk@example.org", condition_codes="I10", program_codes="DPP"))
    )
    with transaction.atomic():
        patient_rows_write(rows=validation.rows, method="bulk_create")

    patient = Patient.objects.get(email_digest=crypto.lookup_digest("bulk@example.org"))
    assert (patient.email, patient.birth_year, patient.state) == ("bulk@example.org", 1950, "MA")
    assert list(patient.conditions.values_list("code", flat=True)) == ["I10"]
    assert list(patient.programs.values_list("code", flat=True)) == ["DPP"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT email FROM consent_patient WHERE id = %s", [patient.pk])
        assert cursor.fetchone()[0].startswith("hm1.")


@pytest.mark.parametrize("path", ["/consent/imports/", "/consent/imports/{id}/", "/consent/imports/{id}/progress/"])
def test_r_min_necessary_marketer_gets_404_on_every_import_page(verified_client, path):
    """R-MIN-NECESSARY: marketers never reach patient-level import pages."""
    patient_import = imports.patient_import_upload(
        actor=staff_make(role="compliance officer"), content=csv_text(good_row()).encode()
    )
    verified_client.sign_in(role="marketer")

    assert verified_client.get(path.format(id=patient_import.pk)).status_code == 404
    assert verified_client.post(f"/consent/imports/{patient_import.pk}/start/").status_code == 404
    assert upload(verified_client, csv_text(good_row())).status_code == 404
    assert PatientImport.objects.count() == 1 and Patient.objects.count() == 0


def test_progress_endpoint_reports_counts_only(verified_client):
    officer = verified_client.sign_in(role="administrator")
    patient_import = imports.patient_import_upload(actor=officer, content=csv_text(good_row(), good_row()).encode())
    imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)

    data = verified_client.get(f"/consent/imports/{patient_import.pk}/progress/").json()

    assert data == {"status": "importing", "processed_rows": 0, "total_rows": 2, "percent": 0}


def test_upload_without_a_file_shows_a_clear_error(verified_client):
    verified_client.sign_in(role="compliance officer")

    response = verified_client.post("/consent/imports/", {})

    assert response.status_code == 200
    assert "Choose a CSV file to upload." in response.content.decode()
    assert PatientImport.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="progress on a second connection needs PostgreSQL")
def test_progress_is_visible_to_other_connections_while_the_import_transaction_is_open():
    officer = staff_make(role="compliance officer")
    content = csv_text(*[good_row() for _ in range(4)]).encode()
    patient_import = imports.patient_import_upload(actor=officer, content=content)
    imports.patient_import_start(actor=officer, patient_import_id=patient_import.pk)
    seen = []
    real = _write_copy
    observer = connections.create_connection("default")

    def observe(batch, now):
        with observer.cursor() as cursor:
            cursor.execute(
                "SELECT p.processed_rows, (SELECT count(*) FROM consent_patient) FROM consent_patientimport p "
                "WHERE id = %s",
                [patient_import.pk],
            )
            seen.append(cursor.fetchone())
        return real(batch, now)

    try:
        with mock.patch.object(write, "_write_copy", side_effect=observe):
            patient_import_run(patient_import_id=patient_import.pk, batch_size=2)
    finally:
        observer.close()

    # Another connection sees progress but no patient until the single transaction commits.
    assert seen == [(0, 0), (2, 0)]
    assert Patient.objects.count() == 4


# --- the management command ---------------------------------------------------------------------------------


def test_import_patients_command_reports_errors_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "export.csv"
    path.write_text(csv_text(good_row(), good_row(email=LEAK), good_row(birth_date="1950-2-3")))

    with pytest.raises(CommandError, match="3 rows, 1 valid, 2 with errors"):
        call_command("import_patients", str(path))

    out = capsys.readouterr().out
    assert "3\temail\tbad_email" in out and "4\tbirth_date\tbad_date" in out
    assert LEAK not in out
    assert Patient.objects.count() == 0


def test_import_patients_command_dry_run_then_import(tmp_path, capsys):
    path = tmp_path / "export.csv"
    path.write_text(csv_text(good_row(), good_row(), good_row(condition_codes="")))

    call_command("import_patients", str(path), "--dry-run")
    assert Patient.objects.count() == 0
    call_command("import_patients", str(path))

    out = capsys.readouterr().out
    assert "Dry run: 3 rows, all valid. Nothing was written." in out
    assert "Imported 3 patients from 3 rows." in out
    assert Patient.objects.count() == 3
    event = AuditEvent.objects.get(action="patient_import.finished")
    assert event.actor_role == "system" and event.details == {"source": "command", "total_rows": 3, "created": 3}
    with pytest.raises(CommandError):  # the same file again: every row already exists
        call_command("import_patients", str(path))
    assert Patient.objects.count() == 3


# --- in a real browser (slow: run with -m browser) ----------------------------------------------------------

@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_officer_previews_errors_then_imports_with_a_live_progress_bar(page, live_server):
    """Headless Chromium: a file with errors is refused with a readable table; a good file is imported while
    the bar moves. Screenshots go to $SCREENSHOT_DIR (20-, 21-, 22-import-*.png) when it is set."""
    import threading
    import time

    officer = staff_make(role="compliance officer", email="officer@demo.hipaamail.test", with_totp=True)
    patient_make(email="already.here@example.org")
    bad = csv_text(
        good_row(),
        good_row(email=LEAK),
        good_row(birth_date="02/03/1950", sex="female"),
        good_row(email="Already.Here@example.org"),
        good_row(condition_codes="E11;diabetes", state="Mass."),
        good_row(full_name=""),
        *[good_row() for _ in range(3)],
    )
    good = csv_text(*[good_row() for _ in range(600)])
    real_write = _write_copy if connection.vendor == "postgresql" else _write_bulk_create

    def slow_write(batch, now):
        time.sleep(0.4)  # so that the bar can be seen moving
        return real_write(batch, now)

    workers = []

    def run_in_background(patient_import_id):
        def work():
            try:
                patient_import_run(patient_import_id=patient_import_id, batch_size=50)
            finally:
                connections.close_all()

        thread = threading.Thread(target=work, daemon=True)
        workers.append(thread)
        thread.start()

    with (
        mock.patch.object(imports, "patient_import_run_enqueue", side_effect=run_in_background),
        mock.patch.object(write, "_write_copy", side_effect=slow_write),
        mock.patch.object(write, "_write_bulk_create", side_effect=slow_write),
    ):
        browser_sign_in(page, live_server, officer)

        page.goto(f"{live_server.url}/consent/imports/")
        screenshot(page, "import-upload")
        page.set_input_files(
            "input[type=file]", {"name": "export.csv", "mimeType": "text/csv", "buffer": bad.encode()}
        )
        page.click("main button[type=submit]")
        page.wait_for_selector("text=This file was not imported")
        assert page.locator("tbody tr").count() == 7
        assert LEAK not in page.content()
        screenshot(page, "20-import-preview-errors")

        page.goto(f"{live_server.url}/consent/imports/")
        page.set_input_files(
            "input[type=file]", {"name": "export.csv", "mimeType": "text/csv", "buffer": good.encode()}
        )
        page.click("main button[type=submit]")
        page.click("text=Import 600 patients")
        page.wait_for_selector("#import-progress")
        if connection.vendor == "postgresql":
            page.wait_for_function(
                "() => { const v = +document.querySelector('[role=progressbar]').getAttribute('aria-valuenow');"
                " return v >= 25 && v < 90; }",
                timeout=20_000,
            )
        screenshot(page, "21-import-progress")
        page.wait_for_selector("text=Imported 600 patients", timeout=30_000)
        screenshot(page, "22-import-done")
        for thread in workers:
            thread.join(timeout=10)

    assert Patient.objects.count() == 601


def test_the_language_column_sets_the_patients_language():
    """Issue 17: a file may say which language a patient reads (en, es, English, Spanish, Español); empty is English;
    anything else is an error that names the row and the column, never the value."""
    rows = [good_row(email=f"lang.{n}@example.org", full_name=f"Lang Person {n}") for n in range(4)]
    for row, language in zip(rows, ["es", "Español", "", "English"], strict=True):
        row["language"] = language
    validation = patient_csv_validate(text=csv_text(*rows))
    assert [row.language for row in validation.rows] == ["es", "es", "en", "en"]
    ids = write.patient_rows_save(rows=validation.rows)
    assert [Patient.objects.get(pk=pk).language for pk in ids] == ["es", "es", "en", "en"]

    rows = [good_row(email=f"lang.bad.{n}@example.org") for n in range(2)]
    rows[0]["language"] = "klingon"
    refused = patient_csv_validate(text=csv_text(*rows))
    assert refused.errors == [{"row": 2, "column": "language", "code": "bad_language"}]
