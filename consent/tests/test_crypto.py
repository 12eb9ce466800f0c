"""R-SEC-ENCRYPT-REST: direct identifiers are encrypted at rest with a rotatable key, and found by a keyed
digest of their normalised form."""
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from audit.models import AuditEvent
from consent import crypto
from consent.management.commands.encryption_rotate import key_counts
from consent.models import Authorization, Patient
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

OLD = crypto.new_key_entry("old")
NEW = crypto.new_key_entry("new")
PATIENT_TEXT_COLUMNS = ("external_id", "email", "full_name", "phone", "street_address", "birth_date")


def raw_patient(patient_id: int) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(PATIENT_TEXT_COLUMNS)} FROM consent_patient WHERE id = %s", [patient_id])
        return dict(zip(PATIENT_TEXT_COLUMNS, cursor.fetchone()))


def full_patient(n: int) -> Patient:
    from datetime import date

    return patient_make(
        email=f"Rotate.{n}@Example.org",
        full_name=f"Rotate Person {n}",
        phone="555-0142",
        street_address=f"{n} Elm Street",
        birth_date=date(1951, 4, n),
        external_id=f"EXT-{n}",
    )


def test_r_sec_encrypt_rest_round_trip_with_a_fresh_nonce_each_time():
    sealed = crypto.encrypt("Jane Q. Patient")

    assert crypto.decrypt(sealed) == "Jane Q. Patient"
    assert sealed != crypto.encrypt("Jane Q. Patient")
    assert sealed.startswith(f"hm1.{crypto.current_key_id()}.") and "Jane" not in sealed


def test_r_sec_encrypt_rest_stored_columns_are_not_plaintext():
    patient = full_patient(1)

    stored = raw_patient(patient.pk)

    for column, value in stored.items():
        assert value.startswith("hm1.") and crypto.key_id_of(value) == crypto.current_key_id(), column
    assert "rotate.1@example.org" not in stored.values() and "Rotate Person 1" not in stored.values()
    reloaded = Patient.objects.get(pk=patient.pk)
    assert (reloaded.email, reloaded.full_name) == ("rotate.1@example.org", "Rotate Person 1")
    assert reloaded.birth_date == "1951-04-01"


def test_r_sec_encrypt_rest_value_under_an_old_key_decrypts_after_a_new_key_is_put_first():
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        patient = full_patient(2)
    assert crypto.key_id_of(raw_patient(patient.pk)["email"]) == "old"

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        assert Patient.objects.get(pk=patient.pk).email == "rotate.2@example.org"
        assert crypto.key_id_of(crypto.encrypt("x")) == "new"
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]), pytest.raises(KeyError):
        Patient.objects.get(pk=patient.pk)  # why an old key stays in the ring until nothing uses it


def test_r_sec_encrypt_rest_rotation_moves_every_patient_value_to_the_new_key(capsys):
    """Patients are re-encrypted; authorizations (append-only) keep their key, and the command says so."""
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        patients = [full_patient(n) for n in range(3, 8)]
        authorization = authorization_make(
            patient=patients[0], purpose=purpose_make(), signature_name="Rotate Person 3", signed_ip="203.0.113.9"
        )
    digests = {p.pk: p.email_digest for p in patients}

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        call_command("encryption_rotate", "--batch-size", "2")
        out = capsys.readouterr().out

        assert key_counts(Patient) == {"new": 30}
        assert key_counts(Authorization) == {"old": 2}
        for patient in patients:
            reloaded = Patient.objects.get(pk=patient.pk)
            assert (reloaded.email, reloaded.full_name, reloaded.external_id) == (
                patient.email,
                patient.full_name,
                patient.external_id,
            )
            assert reloaded.email_digest == digests[patient.pk]  # digests do not depend on the encryption key
        assert Authorization.objects.get(pk=authorization.pk).signature_name == "Rotate Person 3"
        assert "Before (current key: new)\n  patient values by key id: old: 30" in out
        assert "After (current key: new)\n  patient values by key id: new: 30" in out
        assert "authorization values by key id: old: 2" in out
        assert "Re-encrypted 5 patient(s) under new." in out
        assert "Keep those keys in FIELD_ENCRYPTION_KEYS" in out
        event = AuditEvent.objects.get(action="encryption.rotated")
        assert event.details == {
            "key_id": "new",
            "patients_rotated": 5,
            "patient_values_old_key": 0,
            "authorization_values_old_key": 2,
        }

        call_command("encryption_rotate")  # idempotent: nothing left to do
        assert "Re-encrypted 0 patient(s) under new." in capsys.readouterr().out
        assert key_counts(Patient) == {"new": 30}


def test_encryption_rotate_dry_run_changes_nothing(capsys):
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        full_patient(9)

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        call_command("encryption_rotate", "--dry-run")

        assert key_counts(Patient) == {"old": 6}
    assert "patient values by key id: old: 6" in capsys.readouterr().out
    assert not AuditEvent.objects.filter(action="encryption.rotated").exists()


def test_r_sec_encrypt_rest_lookup_digest_is_case_and_space_insensitive():
    assert crypto.lookup_digest("Jane.Doe@Example.ORG") == crypto.lookup_digest("  jane.doe@example.org ")
    assert crypto.lookup_digest("jane.doe@example.org") != crypto.lookup_digest("john.doe@example.org")
    patient = patient_make(email="Mixed.Case@Example.org")
    assert Patient.objects.get(email_digest=crypto.lookup_digest("MIXED.case@example.org")).pk == patient.pk
