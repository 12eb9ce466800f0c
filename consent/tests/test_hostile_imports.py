"""Hostile files for the importers (issue 16, item 4): the patient CSV import, the care-event CSV import and
the FHIR Bundle import, each through its real page by a compliance officer.

Hypothesis draws the files: broken encodings (UTF-16 with its BOM, Latin-1, bytes that are no UTF-8, a UTF-8
BOM), NUL and control characters, cells longer than the csv module reads, unclosed quotes, missing, extra and
repeated columns, duplicate rows, script, formulas and template tags in names; for FHIR, garbage and deeply
nested JSON and Consents with hostile values anywhere. Every answer is a page with a clear message, never a server
error; no page, stored error or log line quotes a value from the file (R-NO-PHI-LEAK); and the imports are
what the product says they are: the patient and event files all or nothing, the FHIR Bundle entry by entry
(each entry whole or not at all), with one audit event."""
import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from audit.tests.hostile import (
    HOSTILE,
    MARKER,
    assert_escaped,
    assert_no_echo_in_errors_or_logs,
    assert_not_a_server_error,
    echoes,
    hostile_text,
    json_mutated,
    rolled_back,
)
from consent.models import Authorization, Patient, PatientEvent, PatientImport
from consent.patient_import.validate import COLUMNS
from consent.tasks import patient_import_run_task
from consent.tests import test_fhir as fhir_tests
from consent.tests.factories import patient_make, purpose_make

pytestmark = pytest.mark.django_db

media = fhir_tests.media  # signed copies in a per-test MEDIA_ROOT


def _cell():
    """A cell: a good value, a hostile one, or one longer than the csv module reads (131,072 characters)."""
    return st.one_of(
        st.sampled_from(["", "MRN-1", "a@example.org", "1950-02-03", "F", "02139", "MA", "E11", "Pat Smith"]),
        hostile_text(max_length=300, surrogates=False),
        st.just("x" * 140_000),
    )


def _header():
    known = st.sampled_from(list(COLUMNS) + ["record_number", "type", "occurred_at", "event_id", "quantity"])
    extra = st.sampled_from(["", "notes", "Full Name", " email ", "EMAIL", MARKER])
    return st.lists(st.one_of(known, extra), min_size=0, max_size=10)


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-8-sig":
        return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    return text.encode(encoding, "replace") if encoding != "utf-8" else text.encode("utf-8", "surrogatepass")


@st.composite
def csv_files(draw) -> tuple[bytes, list[str]]:
    """(the file's bytes, the hostile values in it)."""
    header = draw(_header())
    rows = draw(st.lists(st.lists(_cell(), max_size=len(header) + 2), max_size=5))
    if rows and draw(st.booleans()):
        rows.append(rows[0])  # a duplicate row
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    text = out.getvalue()
    if draw(st.booleans()):
        text = text.replace('"', "", 1)  # an unclosed or stray quote
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    content = _encode(text, encoding)
    if draw(st.booleans()):
        content += draw(st.binary(max_size=16))  # bytes that may be no UTF-8
    values = [cell for row in rows for cell in row if MARKER in cell]
    return content, values


def _upload_patients(client, content: bytes, mode: str = "create"):
    return client.post(
        "/consent/imports/",
        {"mode": mode, "file": SimpleUploadedFile("export.csv", content, content_type="text/csv")},
    )


def test_r_no_phi_leak_hostile_patient_files_are_previewed_cleanly_and_imported_whole_or_not_at_all(
    verified_client, caplog
):
    """R-NO-PHI-LEAK, R-SEC-ENCRYPT-REST: any file is refused with its problems by row and column, or previewed;
    nothing is written before the import is started; a started import writes every row or none."""
    verified_client.sign_in(role="compliance officer")
    seen = {"refused": 0, "imported": 0}

    @settings(HOSTILE, max_examples=25)
    @given(drawn=csv_files(), mode=st.sampled_from(["create", "update"]))
    def check(drawn, mode):
        content, values = drawn
        caplog.clear()
        with rolled_back():
            response = _upload_patients(verified_client, content, mode)
            assert_not_a_server_error(response, "upload")
            assert Patient.objects.count() == 0  # a preview writes no patient
            if response.status_code == 200:  # the form again: no file, or larger than allowed
                assert_no_echo_in_errors_or_logs(response, values, caplog, "upload")
                return
            assert response.status_code == 302
            preview = verified_client.get(response["Location"])
            assert_not_a_server_error(preview, "preview")
            assert not echoes(preview.content.decode(), values), "the preview quotes a cell"
            patient_import = PatientImport.objects.get()
            assert not echoes(json.dumps(patient_import.errors), values)
            if patient_import.error_count:
                seen["refused"] += 1
                assert not patient_import.file  # a refused file is not kept (plaintext PHI never rests)
                started = verified_client.post(f"/consent/imports/{patient_import.pk}/start/")
                assert_not_a_server_error(started, "start")
                patient_import_run_task(patient_import.pk)
                assert Patient.objects.count() == 0
            elif patient_import.total_rows == 0:  # a file with no row (only a header, or nothing): nothing to start
                verified_client.post(f"/consent/imports/{patient_import.pk}/start/")
                patient_import.refresh_from_db()
                assert patient_import.status == "previewed" and Patient.objects.count() == 0
            else:
                seen["imported"] += 1
                verified_client.post(f"/consent/imports/{patient_import.pk}/start/")
                patient_import_run_task(patient_import.pk)
                patient_import.refresh_from_db()
                assert patient_import.status == "done"
                assert Patient.objects.count() == patient_import.total_rows  # every row, or (none) none
                for patient in Patient.objects.all()[:3]:
                    page = verified_client.get(f"/consent/patients/{patient.pk}/")
                    assert_not_a_server_error(page, "patient page")
                    assert_escaped(page, "patient page")
            for record in caplog.records:
                assert not echoes(record.getMessage(), values), record.getMessage()

    check()
    assert seen["refused"] > 0


@st.composite
def hostile_patient_rows(draw) -> tuple[bytes, list[str]]:
    """A file that passes every check, its free text hostile: script and formulas in names and addresses."""
    count = draw(st.integers(1, 4))
    text = st.sampled_from(
        [f"<script>{MARKER}(1)</script>", f"=HYPERLINK(\"{MARKER}\")", f"{{{{ settings.SECRET_KEY }}}}{MARKER}",
         f"O'Brien \"{MARKER}\" <b>", f"\u202e{MARKER}\u200b"]
    )
    rows = []
    for n in range(count):
        rows.append({
            "external_id": f"MRN-{n}-{MARKER}",
            "email": f"p{n}.{MARKER}@example.org",
            "full_name": draw(text),
            "street_address": draw(text),
        })
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["external_id", "email", "full_name", "street_address"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode(), [row["full_name"] for row in rows]


def test_hostile_names_in_a_valid_patient_file_are_imported_whole_and_shown_escaped(verified_client):
    """A file whose only problem is what its names say is imported whole; the names are text on every page."""
    verified_client.sign_in(role="compliance officer")

    @settings(HOSTILE, max_examples=6)
    @given(drawn=hostile_patient_rows())
    def check(drawn):
        content, names = drawn
        with rolled_back():
            response = _upload_patients(verified_client, content)
            patient_import = PatientImport.objects.get()
            assert response.status_code == 302 and patient_import.error_count == 0, patient_import.errors
            verified_client.post(f"/consent/imports/{patient_import.pk}/start/")
            patient_import_run_task(patient_import.pk)
            assert Patient.objects.count() == patient_import.total_rows == len(names)
            for patient in Patient.objects.all():
                page = verified_client.get(f"/consent/patients/{patient.pk}/")
                assert page.status_code == 200
                assert_escaped(page, "patient page")
                assert f"<script>{MARKER}" not in page.content.decode()
            search = verified_client.get("/consent/patients/", {"q": names[0]})
            assert_not_a_server_error(search, "search")
            assert_escaped(search, "search")

    check()


def test_hostile_event_files_record_every_event_or_none(verified_client, caplog):
    """R-NO-PHI-LEAK: a care-event file is checked whole; with any problem nothing is recorded, and the page
    lists the problems without a value; otherwise every row is recorded (or known already)."""
    patient_make(external_id="MRN-1", email="a@example.org")  # the record number and address the cells use
    verified_client.sign_in(role="compliance officer")
    seen = {"refused": 0, "recorded": 0}

    @settings(HOSTILE, max_examples=25)
    @given(drawn=csv_files(), action=st.sampled_from(["check", "record"]))
    def check(drawn, action):
        content, values = drawn
        caplog.clear()
        with rolled_back():
            before = PatientEvent.objects.count()
            response = verified_client.post(
                "/consent/imports/events/",
                {"action": action, "file": SimpleUploadedFile("events.csv", content, content_type="text/csv")},
            )
            assert_not_a_server_error(response, "event import")
            assert not echoes(response.content.decode(), values), "the page quotes a cell"
            assert_no_echo_in_errors_or_logs(response, values, caplog, "event import")
            recorded = PatientEvent.objects.count() - before
            validation = response.context.get("validation") if response.context else None
            if validation is not None and validation.errors:
                seen["refused"] += 1
                assert recorded == 0
            elif action == "check":
                assert recorded == 0
            else:
                seen["recorded"] += 1

    check()
    assert seen["refused"] > 0


def test_an_oversized_upload_is_refused_with_its_limit(verified_client, monkeypatch):
    """A file over the limit is refused by the form with the limit in words, before it is read."""
    import consent.forms.imports as import_forms
    import consent.forms.patients as patient_forms

    verified_client.sign_in(role="compliance officer")
    monkeypatch.setattr(import_forms, "MAX_FILE_BYTES", 1_000)
    monkeypatch.setattr(import_forms, "EVENT_MAX_FILE_BYTES", 1_000)
    monkeypatch.setattr(patient_forms, "FHIR_MAX_BYTES", 1_000)
    big = b"external_id,email,full_name\n" + b"MRN,a@example.org,Pat\n" * 100

    patients = _upload_patients(verified_client, big)
    events_page = verified_client.post(
        "/consent/imports/events/", {"action": "record", "file": SimpleUploadedFile("e.csv", big)}
    )
    bundle = verified_client.post("/consent/fhir/import/", {"bundle": SimpleUploadedFile("b.json", big)})

    assert patients.status_code == 200 and "The file is larger than 50 MB." in patients.content.decode()
    assert events_page.status_code == 200 and "The file is larger than" in events_page.content.decode()
    assert bundle.status_code == 400 and "The file is larger than 20 MB." in bundle.content.decode()
    assert not PatientImport.objects.exists() and not PatientEvent.objects.exists()
    assert not AuditEvent.objects.filter(action__in=["patient_import.previewed", "fhir.imported"]).exists()


# --- FHIR -----------------------------------------------------------------------------------------------------

GARBAGE = {
    "nested lists": b"[" * 100_000 + b"]" * 100_000,
    "nested objects": b'{"resourceType":"Bundle","entry":[' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"]}",
    "nested contained": b'{"resourceType":"Bundle","type":"collection","entry":[{"resource":'
    + b'{"resourceType":"Consent","contained":[' * 300 + b"{}" + b"]}" * 300 + b"}]}",
    "a 5,000-digit number": b'{"resourceType":"Bundle","entry":[{"resource":{"x":' + b"9" * 5000 + b"}}]}",
    "UTF-16": '{"resourceType":"Bundle"}'.encode("utf-16"),
    "broken UTF-8": b'{"resourceType":"Bundle","x":"\xff\xfe"}',
    "a list": b"[1, 2]",
    "NUL": b"\x00\x00\x00",
    "not JSON": b"{nope",
    "entries not a list": b'{"resourceType":"Bundle","entry":{"a":1}}',
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_and_deeply_nested_json_get_a_clear_message_and_write_nothing(verified_client, name):
    """A file that is not a Bundle of Consents, however nested or encoded, is refused whole with a sentence
    (it was a server error for nesting deeper than Python's recursion limit and for a 5,000-digit number)."""
    verified_client.sign_in(role="compliance officer")

    response = verified_client.post("/consent/fhir/import/", {"bundle": SimpleUploadedFile("b.json", GARBAGE[name])})

    assert response.status_code == 400
    errors = response.context["form"].errors["bundle"]
    assert len(errors) == 1 and errors[0].startswith("The ") and errors[0].endswith(".")
    assert not Authorization.objects.exists()
    assert not AuditEvent.objects.filter(action="fhir.imported").exists()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text(surrogates=False),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


def hostile_consents(good: dict):
    """A Consent as we export it, with a few of its values (at any depth) replaced by hostile JSON."""
    return json_mutated(good, JSON_VALUES)


def test_r_no_phi_leak_hostile_consents_are_imported_or_rejected_entry_by_entry(verified_client, caplog):
    """R-NO-PHI-LEAK, R-PURPOSE-KIND: Consents with hostile values anywhere: each entry is created whole or
    rejected with a reason code; the report quotes no value; the Bundle is one audit event."""
    patient = patient_make(external_id="MRN-20931", email="round.trip@example.org")
    purpose = purpose_make(code="cpap-supplies", name="CPAP supplies")
    good_r4, _ = fhir_tests._exported(patient, purpose, "r4")
    good_r5, _ = fhir_tests._exported(patient, purpose, "r5")
    verified_client.sign_in(role="compliance officer")
    outcomes = set()

    @settings(HOSTILE, max_examples=25)
    @given(resources=st.lists(st.one_of(hostile_consents(good_r4), hostile_consents(good_r5), JSON_VALUES),
                              min_size=1, max_size=3))
    def check(resources):
        values = [value for value in _strings(resources) if MARKER in value]
        caplog.clear()
        with rolled_back():
            before = Authorization.objects.count()
            response = verified_client.post(
                "/consent/fhir/import/", {"bundle": SimpleUploadedFile("b.json", fhir_tests._bundle(*resources))}
            )
            assert_not_a_server_error(response, "fhir import")
            assert response.status_code == 200
            assert not echoes(response.content.decode(), values), "the report quotes a value"
            assert_no_echo_in_errors_or_logs(response, values, caplog, "fhir import")
            report = response.context["report"]
            outcomes.update(entry.outcome for entry in report.entries)
            assert all(entry.reason for entry in report.rejected_entries)
            assert Authorization.objects.count() - before == report.count("created")
            assert AuditEvent.objects.filter(action="fhir.imported").count() == 1

    check()
    assert "rejected" in outcomes


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in _strings(key) + _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("postal_code", "\u0660\u0662\u0661\u0663\u0669", "bad_postal_code"),  # Arabic-Indic digits
        ("postal_code", "\u0966\u0968\u0967\u0969\u096f", "bad_postal_code"),  # Devanagari digits
        ("birth_date", "\u0661\u0669\u0665\u0660-02-03", "bad_date"),
    ],
)
def test_digits_of_other_scripts_are_no_zip_code_or_date(column, value, code):
    """A US ZIP code and a date are ASCII digits: the check said \\d, which matches the digits of every script,
    and stored "٠٢١٣٩" as a postal code that no segment rule (a ZIP prefix) would ever match."""
    from consent.patient_import.validate import patient_csv_validate

    text = f"external_id,email,full_name,{column}\nMRN-1,a@example.org,Pat,{value}\n"

    validation = patient_csv_validate(text=text)

    assert [(error["row"], error["column"], error["code"]) for error in validation.errors] == [(2, column, code)]
