"""patients_upsert: a batch keyed by external_id, each item created, updated, unchanged or rejected with the
CSV import's error codes; valid items written together, rejected ones change nothing; one audit event with
counts, never PHI (R-NO-PHI-LEAK); identifiers encrypted at rest (R-SEC-ENCRYPT-REST)."""
from datetime import date

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from audit import actions
from audit.models import AuditEvent
from consent import crypto
from consent.models import Patient
from consent.services.patients import MAX_UPSERT_ITEMS, patients_upsert
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db


def item(n: int, **overrides) -> dict:
    fields = {
        "external_id": f"MRN-{n:05d}",
        "email": f"Upsert.{n}@Example.org",
        "full_name": f"Upsert Person {n}",
        "birth_date": "1960-04-05",
        "sex": "f",
        "postal_code": "02139",
        "state": "ma",
        "condition_codes": ["E11", "g4733"],
    }
    return fields | overrides


def statuses(results) -> list[str]:
    return [result.status for result in results]


def test_new_items_are_created_with_encrypted_identifiers_and_coded_attributes():
    """R-SEC-ENCRYPT-REST: direct identifiers are stored encrypted, digests let them be found."""
    results = patients_upsert(items=[item(1), item(2, program_codes=["dpp"])])

    assert statuses(results) == ["created", "created"]
    assert [result.index for result in results] == [0, 1]
    first = Patient.objects.get(pk=results[0].patient_id)
    assert (first.email, first.full_name, first.external_id) == ("upsert.1@example.org", "Upsert Person 1", "MRN-00001")
    assert (first.birth_date, first.birth_year, first.sex, first.state) == ("1960-04-05", 1960, "F", "MA")
    assert first.email_digest == crypto.lookup_digest("upsert.1@example.org")
    assert first.external_id_digest == crypto.lookup_digest("MRN-00001")
    assert sorted(first.conditions.values_list("code", flat=True)) == ["E11", "G47.33"]
    assert list(Patient.objects.get(pk=results[1].patient_id).programs.values_list("code", flat=True)) == ["DPP"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT email, full_name, external_id FROM consent_patient WHERE id = %s", [first.pk])
        raw = cursor.fetchone()
    assert all(value.startswith("hm1.") for value in raw)


def test_an_update_sets_only_the_fields_given_and_replaces_the_codes_given():
    patient = patient_make(
        email="keep@example.org", external_id="MRN-K", birth_year=1944, state="NY", condition_codes=["I10"],
        program_codes=["DPP"],
    )

    (result,) = patients_upsert(items=[{"external_id": "MRN-K", "state": "ca", "condition_codes": ["E11"]}])

    assert (result.status, result.patient_id, result.errors) == ("updated", patient.pk, [])
    patient.refresh_from_db()
    assert (patient.state, patient.email, patient.birth_year) == ("CA", "keep@example.org", 1944)
    assert list(patient.conditions.values_list("code", flat=True)) == ["E11"]
    assert list(patient.programs.values_list("code", flat=True)) == ["DPP"]  # omitted: unchanged


def test_an_item_equal_to_the_stored_patient_is_unchanged_and_writes_nothing():
    (created,) = patients_upsert(items=[item(3)])

    (again,) = patients_upsert(items=[item(3, email="UPSERT.3@example.org")])

    assert (again.status, again.patient_id) == ("unchanged", created.patient_id)
    event = AuditEvent.objects.filter(action=actions.PATIENTS_UPSERTED).latest("id")
    assert event.details["unchanged"] == 1 and event.details["updated"] == 0


def test_an_update_changes_the_email_and_re_encrypts_it_with_its_digest():
    """R-SEC-ENCRYPT-REST: an updated identifier is stored encrypted, its digest recomputed."""
    (created,) = patients_upsert(items=[item(4)])

    (result,) = patients_upsert(items=[{"external_id": "MRN-00004", "email": "New.Address@example.org"}])

    assert result.status == "updated"
    patient = Patient.objects.get(pk=created.patient_id)
    assert patient.email == "new.address@example.org"
    assert patient.email_digest == crypto.lookup_digest("new.address@example.org")
    with connection.cursor() as cursor:
        cursor.execute("SELECT email FROM consent_patient WHERE id = %s", [patient.pk])
        assert cursor.fetchone()[0].startswith(f"hm1.{crypto.current_key_id()}.")


def test_rejected_items_change_nothing_and_the_valid_ones_are_written():
    patient = patient_make(email="taken@example.org", external_id="MRN-T")
    items = [
        item(5),
        item(6, email="not-an-email"),
        item(7, birth_date="2999-01-01", sex="Q"),
        {"external_id": "MRN-NEW"},  # a new patient without email or name
        item(8, email="Taken@example.org"),  # another patient's address
        {"external_id": "MRN-T", "email": "x\x00y@example.org"},
    ]

    results = patients_upsert(items=items)

    assert statuses(results) == ["created", "rejected", "rejected", "rejected", "rejected", "rejected"]
    assert [(e["field"], e["code"]) for e in results[1].errors] == [("email", "bad_email")]
    assert [(e["field"], e["code"]) for e in results[2].errors] == [("birth_date", "bad_date"), ("sex", "unknown_sex")]
    assert [(e["field"], e["code"]) for e in results[3].errors] == [
        ("email", "missing_required"), ("full_name", "missing_required")
    ]
    assert [(e["field"], e["code"]) for e in results[4].errors] == [("email", "email_in_use")]
    assert results[4].errors[0]["message"] == "Email belongs to another patient (matched by a different external id)."
    assert results[5].status == "rejected"
    assert Patient.objects.count() == 2
    patient.refresh_from_db()
    assert patient.email == "taken@example.org"


def test_duplicates_inside_a_batch_are_rejected_after_the_first():
    items = [item(9), item(10, external_id="mrn-00009"), item(11, email="upsert.9@EXAMPLE.org"), item(12)]

    results = patients_upsert(items=items)

    assert statuses(results) == ["created", "rejected", "rejected", "created"]
    assert [(e["field"], e["code"]) for e in results[1].errors] == [("external_id", "duplicate_in_batch")]
    assert [(e["field"], e["code"]) for e in results[2].errors] == [("email", "duplicate_in_batch")]
    assert Patient.objects.count() == 2


@pytest.mark.parametrize("size", [0, MAX_UPSERT_ITEMS + 1])
def test_a_batch_holds_one_to_a_thousand_items(size):
    with pytest.raises(ValidationError) as refused:
        patients_upsert(items=[item(n) for n in range(size)])

    assert refused.value.code == "batch_size"
    assert Patient.objects.count() == 0 and not AuditEvent.objects.filter(action=actions.PATIENTS_UPSERTED).exists()


def test_a_full_batch_of_a_thousand_is_written():
    results = patients_upsert(items=[item(20_000 + n) for n in range(MAX_UPSERT_ITEMS)])

    assert statuses(results) == ["created"] * MAX_UPSERT_ITEMS
    assert Patient.objects.count() == MAX_UPSERT_ITEMS


def test_r_no_phi_leak_one_audit_event_with_counts_and_codes_only():
    """R-NO-PHI-LEAK: the batch's audit event holds counts and error codes, never a value."""
    patient_make(email="someone@example.org", external_id="MRN-S")
    items = [item(30), {"external_id": "MRN-S", "last_visit": "2024-01-02"}, item(31, email="leak@@nowhere")]

    patients_upsert(items=items, source="api")

    (event,) = AuditEvent.objects.filter(action=actions.PATIENTS_UPSERTED)
    assert event.details == {
        "source": "api", "items": 3, "created": 1, "updated": 1, "unchanged": 0, "rejected": 1,
        "error_codes": {"bad_email": 1},
    }
    text = str(event.details) + event.object_id
    for secret in ("leak@@nowhere", "Upsert Person 30", "MRN-S", "upsert.30@example.org"):
        assert secret not in text
    assert Patient.objects.get(external_id_digest=crypto.lookup_digest("MRN-S")).last_visit == date(2024, 1, 2)
    assert not AuditEvent.objects.filter(action=actions.PATIENT_CREATED, details__source="api").exists()
