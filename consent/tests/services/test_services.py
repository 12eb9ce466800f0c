from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from consent.models import Authorization, Purpose, Revocation
from consent.services.authorizations import authorization_grant, authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def test_r_purpose_remuneration_treatment_purpose_paid_by_third_party_is_refused():
    """R-PURPOSE-REMUNERATION: a communication a third party pays for is marketing, never treatment."""
    with pytest.raises(ValidationError, match="third party pays"):
        purpose_make(kind=Purpose.Kind.TREATMENT, third_party_paid=True)

    assert Purpose.objects.count() == 0


def test_r_purpose_remuneration_database_refuses_it_too():
    purpose = purpose_make(kind=Purpose.Kind.TREATMENT)

    with pytest.raises(IntegrityError), transaction.atomic():
        Purpose.objects.filter(pk=purpose.pk).update(third_party_paid=True)


def test_r_auth_core_5_authorization_needs_an_expiry_after_signing():
    """R-AUTH-CORE-5: an expiration is never empty and never before the signature."""
    patient, purpose = patient_make(), purpose_make()
    now = timezone.now()

    with pytest.raises(ValidationError):
        authorization_grant(actor=None, patient=patient, purpose=purpose, signed_at=now, expires_at=None)
    with pytest.raises((ValidationError, IntegrityError)), transaction.atomic():
        authorization_grant(
            actor=None, patient=patient, purpose=purpose, signed_at=now, expires_at=now - timedelta(days=1)
        )

    assert Authorization.objects.count() == 0


def test_r_sec_audit_grant_and_revoke_are_audited_without_phi():
    """R-SEC-AUDIT, R-NO-PHI-LEAK: both events are recorded, with ids and codes only."""
    patient = patient_make(email="ada.lovelace@example.org", full_name="Ada Lovelace")
    purpose = purpose_make(code="cpap-supplies")
    authorization = authorization_make(patient=patient, purpose=purpose)

    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")

    granted = AuditEvent.objects.get(action="authorization.granted")
    revoked = AuditEvent.objects.get(action="authorization.revoked")
    assert granted.details == {"purpose": "cpap-supplies", "channel": "web"} and granted.patient_id == patient.pk
    assert revoked.details == {
        "purpose_id": purpose.pk,
        "channel": "portal",
        "authorization_ids": [authorization.pk],
    }
    text = str(list(AuditEvent.objects.values()))
    assert "Ada" not in text and "lovelace" not in text


def test_revoking_twice_is_harmless_and_records_one_revocation():
    patient, purpose = patient_make(), purpose_make()
    authorization_make(patient=patient, purpose=purpose)

    first = authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")
    second = authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="one_click")

    assert len(first) == 1 and second == []
    assert Revocation.objects.count() == 1


def test_revocation_ends_only_the_purpose_it_names():
    """R-AUTH-NO-COMPOUND: each purpose is revoked on its own."""
    patient, purpose, other = patient_make(), purpose_make(), purpose_make()
    authorization_make(patient=patient, purpose=purpose)
    kept = authorization_make(patient=patient, purpose=other)

    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")

    assert not Revocation.objects.filter(authorization=kept).exists()
