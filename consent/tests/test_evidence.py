"""Consent evidence ends coverage only through rows of its own, and the database keeps it append-only
(R-AUTH-DEFECTIVE, R-RETAIN-6Y, DESIGN.md)."""
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from consent.models import Authorization, AuthorizationDefect, Revocation
from consent.selectors.coverage import CoverageGap, authorization_covering_list, authorization_gap_list
from consent.services.authorizations import (
    authorization_defect_record,
    authorization_grant,
    authorization_revoke,
    expiry_event_record,
)
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _event_based(patient, purpose):
    return authorization_grant(
        actor=None,
        patient=patient,
        purpose=purpose,
        signed_at=timezone.now() - timedelta(days=10),
        expires_at=None,
        expiry_event="when you no longer rent equipment from us",
    )


def test_r_auth_core_5_an_authorization_needs_a_date_or_an_event():
    """R-AUTH-CORE-5: neither an expiry date nor an expiry event is refused."""
    with pytest.raises(ValidationError, match="expiration date or an expiration event"):
        authorization_grant(actor=None, patient=patient_make(), purpose=purpose_make(), expires_at=None)

    assert Authorization.objects.count() == 0


def test_r_auth_defective_expiry_event_ends_coverage_from_when_it_occurred():
    """R-AUTH-DEFECTIVE: an event-based authorization covers until its event is recorded, and not from the
    instant the event occurred."""
    patient, purpose = patient_make(), purpose_make()
    authorization = _event_based(patient, purpose)
    occurred = timezone.now() - timedelta(days=2)
    assert authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists()

    expiry_event_record(actor=None, authorization_id=authorization.pk, occurred_at=occurred, source="integration")

    def covers(at):
        return authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk], at=at).exists()

    assert covers(occurred - timedelta(seconds=1)) is True
    assert covers(occurred) is False
    assert covers(timezone.now()) is False
    assert authorization_gap_list(purpose_id=purpose.pk, patient_ids=[patient.pk]) == {
        patient.pk: CoverageGap.EXPIRY_EVENT
    }


def test_an_expiry_event_is_refused_for_a_date_based_authorization():
    authorization = authorization_make(patient=patient_make(), purpose=purpose_make())

    with pytest.raises(ValidationError):
        expiry_event_record(actor=None, authorization_id=authorization.pk, occurred_at=timezone.now())


@pytest.mark.parametrize("reason", AuthorizationDefect.Reason.values)
def test_r_auth_defective_each_defect_ends_coverage_with_its_own_reason(reason):
    """R-AUTH-DEFECTIVE: each ground of 164.508(b)(2) is a distinct blocked reason."""
    patient, purpose = patient_make(), purpose_make()
    authorization = authorization_make(patient=patient, purpose=purpose)

    authorization_defect_record(actor=None, authorization_id=authorization.pk, reason=reason)

    assert not authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists()
    assert authorization_gap_list(purpose_id=purpose.pk, patient_ids=[patient.pk]) == {patient.pk: reason}


def test_revocation_outranks_other_reasons_in_the_evidence():
    patient, purpose = patient_make(), purpose_make()
    authorization = authorization_make(patient=patient, purpose=purpose)
    authorization_defect_record(actor=None, authorization_id=authorization.pk, reason="defect_compound")
    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")

    assert authorization_gap_list(purpose_id=purpose.pk, patient_ids=[patient.pk]) == {patient.pk: "revoked"}


def test_r_retain_6y_authorizations_cannot_be_deleted_or_edited():
    """R-RETAIN-6Y, R-SEC-INTEGRITY: the database refuses to delete or rewrite an authorization."""
    authorization = authorization_make(patient=patient_make(), purpose=purpose_make())

    with pytest.raises((DatabaseError, IntegrityError), match="append-only"), transaction.atomic():
        Authorization.objects.filter(pk=authorization.pk).update(expires_at=timezone.now() + timedelta(days=9999))
    with pytest.raises((DatabaseError, IntegrityError), match="append-only"), transaction.atomic():
        Authorization.objects.filter(pk=authorization.pk).delete()


def test_the_pdf_copy_is_attached_once():
    authorization = authorization_make(patient=patient_make(), purpose=purpose_make())

    Authorization.objects.filter(pk=authorization.pk).update(pdf="authorizations/copy.pdf")

    with pytest.raises((DatabaseError, IntegrityError), match="append-only"), transaction.atomic():
        Authorization.objects.filter(pk=authorization.pk).update(pdf="authorizations/other.pdf")


def test_r_retain_6y_revocations_cannot_be_deleted_or_edited():
    patient, purpose = patient_make(), purpose_make()
    authorization_make(patient=patient, purpose=purpose)
    (revocation,) = authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")

    with pytest.raises((DatabaseError, IntegrityError), match="append-only"), transaction.atomic():
        Revocation.objects.filter(pk=revocation.pk).delete()
    with pytest.raises((DatabaseError, IntegrityError), match="append-only"), transaction.atomic():
        Revocation.objects.filter(pk=revocation.pk).update(channel="written")


def test_r_sec_encrypt_rest_patient_identifiers_are_not_stored_in_clear():
    """R-SEC-ENCRYPT-REST: the columns hold ciphertext; the email is found by its keyed digest."""
    from django.db import connection

    from consent import crypto
    from consent.models import Patient

    patient = patient_make(email="Grace.Hopper@Example.org", full_name="Grace Hopper")
    with connection.cursor() as cursor:
        cursor.execute("SELECT email, full_name FROM consent_patient WHERE id = %s", [patient.pk])
        email_column, name_column = cursor.fetchone()

    assert "grace" not in email_column.lower() and "Hopper" not in name_column
    assert Patient.objects.get(email_digest=crypto.lookup_digest("grace.hopper@example.org")).full_name == "Grace Hopper"


def test_recording_the_same_defect_or_event_twice_is_refused_clearly():
    patient, purpose = patient_make(), purpose_make()
    authorization = _event_based(patient, purpose)
    expiry_event_record(actor=None, authorization_id=authorization.pk, occurred_at=timezone.now())
    authorization_defect_record(actor=None, authorization_id=authorization.pk, reason="defect_compound")

    with pytest.raises(ValidationError, match="already recorded"):
        expiry_event_record(actor=None, authorization_id=authorization.pk, occurred_at=timezone.now())
    with pytest.raises(ValidationError, match="already recorded"):
        authorization_defect_record(actor=None, authorization_id=authorization.pk, reason="defect_compound")
