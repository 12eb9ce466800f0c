"""The one predicate: when an authorization covers a patient for a purpose (R-SEND-COVERED)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import Revocation
from consent.selectors.coverage import CoverageGap, authorization_covering_list, authorization_gap_list
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _covers(authorization, at) -> bool:
    return authorization_covering_list(
        purpose_id=authorization.purpose_id, patient_ids=[authorization.patient_id], at=at
    ).exists()


def test_r_send_covered_expiry_boundary_is_exclusive():
    """R-SEND-COVERED, R-AUTH-DEFECTIVE: an authorization expiring exactly now no longer covers."""
    authorization = authorization_make(patient=patient_make(), purpose=purpose_make())
    expires = authorization.expires_at

    assert _covers(authorization, expires - timedelta(microseconds=1)) is True
    assert _covers(authorization, expires) is False
    assert _covers(authorization, expires + timedelta(seconds=1)) is False


def test_r_send_covered_not_before_signing():
    authorization = authorization_make(patient=patient_make(), purpose=purpose_make())

    assert _covers(authorization, authorization.signed_at) is True
    assert _covers(authorization, authorization.signed_at - timedelta(microseconds=1)) is False


def test_r_send_covered_only_for_exactly_its_purpose():
    patient = patient_make()
    purpose, other = purpose_make(), purpose_make()
    authorization_make(patient=patient, purpose=purpose)

    assert authorization_covering_list(purpose_id=other.pk, patient_ids=[patient.pk]).exists() is False
    assert authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists() is True


def test_r_revoke_anytime_revoked_authorization_no_longer_covers():
    patient, purpose = patient_make(), purpose_make()
    authorization_make(patient=patient, purpose=purpose)

    revocations = authorization_revoke(
        actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel=Revocation.Channel.PORTAL
    )

    assert len(revocations) == 1
    assert authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists() is False


def test_default_instant_is_the_database_clock():
    """With no `at`, the predicate asks the database for now(): an authorization that expired a moment ago
    by the database's clock does not cover."""
    patient, purpose = patient_make(), purpose_make()
    authorization_make(
        patient=patient, purpose=purpose, signed_ago=timedelta(days=2), expires_in=-timedelta(milliseconds=1)
    )

    assert authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists() is False


def test_r_send_evidence_gap_reasons():
    """R-SEND-EVIDENCE: each uncovered patient gets the reason: revoked, expired, wrong purpose or none."""
    purpose, other = purpose_make(), purpose_make()
    covered, revoked, expired, wrong, nothing = (patient_make() for _ in range(5))
    authorization_make(patient=covered, purpose=purpose)
    authorization_make(patient=revoked, purpose=purpose)
    authorization_revoke(actor=None, patient_id=revoked.pk, purpose_id=purpose.pk, channel="portal")
    authorization_make(patient=expired, purpose=purpose, signed_ago=timedelta(days=400), expires_in=-timedelta(days=1))
    authorization_make(patient=wrong, purpose=other)

    gaps = authorization_gap_list(
        purpose_id=purpose.pk, patient_ids=[covered.pk, revoked.pk, expired.pk, wrong.pk, nothing.pk]
    )

    assert gaps == {
        revoked.pk: CoverageGap.REVOKED,
        expired.pk: CoverageGap.EXPIRED,
        wrong.pk: CoverageGap.WRONG_PURPOSE,
        nothing.pk: CoverageGap.NO_AUTHORIZATION,
    }


def test_a_newer_authorization_covers_after_an_old_one_expired():
    patient, purpose = patient_make(), purpose_make()
    authorization_make(patient=patient, purpose=purpose, signed_ago=timedelta(days=400), expires_in=-timedelta(days=1))
    renewed = authorization_make(patient=patient, purpose=purpose)

    covering = list(authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]))

    assert covering == [renewed]
    assert timezone.now() < renewed.expires_at
