"""Authorizations and revocations captured elsewhere and recorded through the API (issue 13), channel external:
only on a published form version (R-AUTH-IMMUTABLE), the form's text, hash and expiry rule (R-AUTH-COPY,
R-AUTH-CORE-5), the evidence checked by its bytes before anything is stored, the signer's name encrypted
(R-SEC-ENCRYPT-REST), and a revocation that ends coverage when it commits (R-REVOKE-ANYTIME)."""
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from audit import actions
from audit.models import AuditEvent
from consent.documents import form_text, text_hash
from consent.models import Authorization, Revocation
from consent.selectors.coverage import authorization_covering_list
from consent.services import form_versions
from consent.services.external import authorization_external_record, authorization_external_revoke
from consent.services.signing import form_expiry_for
from consent.services.written import SCAN_MAX_BYTES
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _stored_files(media) -> list[Path]:
    return [path for path in Path(media).rglob("*") if path.is_file()] if Path(media).exists() else []


def _code(error: pytest.ExceptionInfo) -> str:
    value = error.value
    if hasattr(value, "error_dict"):
        return next(iter(value.error_dict.values()))[0].code
    return value.error_list[0].code


@pytest.fixture
def signed():
    patient = patient_make(email="jane.doe@example.org", full_name="Jane Doe")
    purpose = purpose_make(code="cpap-supplies", name="CPAP supplies")
    form = form_published_make(purpose)
    return patient, purpose, form


def _record(patient, purpose, form, **overrides):
    fields = {
        "patient": patient,
        "purpose": purpose,
        "form_version": form.version,
        "signed_at": timezone.now() - timedelta(days=3),
        "signer_name": "Jane  Doe",
        "evidence": PDF,
        "evidence_kind": "pdf",
    }
    fields |= overrides
    return authorization_external_record(**fields)


def _covered(authorization) -> bool:
    return (
        authorization_covering_list(purpose_id=authorization.purpose_id, patient_ids=[authorization.patient_id])
        .filter(id=authorization.pk)
        .exists()
    )


def test_external_authorization_is_recorded_with_the_form_text_hash_and_expiry_and_covers(signed, media):
    patient, purpose, form = signed
    signed_at = timezone.now() - timedelta(days=3)
    authorization = _record(patient, purpose, form, signed_at=signed_at)
    stored = Authorization.objects.get(pk=authorization.pk)
    assert stored.channel == Authorization.Channel.EXTERNAL
    assert stored.form_version_id == form.pk
    assert stored.document_text == form_text(form)
    assert stored.text_hash == text_hash(form_text(form)) == form.text_hash
    assert (stored.expires_at, stored.expiry_event) == form_expiry_for(form=form, signed_at=signed_at)
    assert stored.signature_name == "Jane Doe"
    assert stored.recorded_by is None
    assert stored.scan.name.startswith("scans/") and stored.scan.name.endswith(".pdf")
    assert "jane" not in stored.scan.name.lower()
    assert Path(media, stored.scan.name).read_bytes() == PDF
    assert _covered(stored)
    audit = AuditEvent.objects.filter(action=actions.AUTHORIZATION_GRANTED).latest("id")
    assert audit.patient_id == patient.pk and audit.object_id == str(stored.pk)
    assert audit.details == {"purpose": "cpap-supplies", "channel": "external", "has_scan": True}


def test_r_sec_encrypt_rest_signer_name_is_stored_encrypted(signed):
    patient, purpose, form = signed
    authorization = _record(patient, purpose, form, signer_name="Jane Doe")
    with connection.cursor() as cursor:
        cursor.execute("SELECT signature_name FROM consent_authorization WHERE id = %s", [authorization.pk])
        raw = cursor.fetchone()[0]
    assert raw and "Jane" not in raw


def test_an_older_published_version_still_counts_for_those_who_signed_it(signed):
    """R-AUTH-IMMUTABLE: a paper form of version 1 signed before version 2 was published is recorded on version 1."""
    patient, purpose, v1 = signed
    v2 = form_published_make(purpose, expiry_months=12)
    authorization = _record(patient, purpose, v1)
    assert authorization.form_version_id == v1.pk and v2.version == 2


def test_expiry_follows_the_form_versions_rule_for_dates_and_events():
    patient, purpose = patient_make(), purpose_make()
    by_event = form_published_make(
        purpose, expiry_kind="event", expiry_months=None, expiry_event="when you stop renting equipment from us"
    )
    authorization = _record(patient, purpose, by_event)
    assert authorization.expires_at is None
    assert authorization.expiry_event == "when you stop renting equipment from us"

    other = purpose_make()
    end = timezone.localdate() + timedelta(days=400)
    by_date = form_published_make(other, expiry_kind="date", expiry_months=None, expiry_date=end)
    dated = _record(patient, other, by_date)
    assert timezone.localtime(dated.expires_at).date() == end


def test_a_form_version_that_had_ended_when_signed_is_refused(media):
    """R-AUTH-CORE-5: a paper signed after its form's fixed end date never covered anyone."""
    patient, purpose = patient_make(), purpose_make()
    end = timezone.localdate() + timedelta(days=2)
    form = form_published_make(purpose, expiry_kind="date", expiry_months=None, expiry_date=end)
    later = timezone.now() + timedelta(days=10)
    with mock.patch("django.utils.timezone.now", return_value=later), pytest.raises(ValidationError) as refused:
        _record(patient, purpose, form, signed_at=later - timedelta(days=1))
    assert _code(refused) == "form_version_ended"
    assert not Authorization.objects.exists()
    assert _stored_files(media) == []


@pytest.mark.parametrize("which", ["draft", "missing", "other_purpose"])
def test_an_unpublished_or_unknown_form_version_is_refused_and_nothing_is_stored(signed, media, which):
    patient, purpose, form = signed
    version = form.version
    if which == "draft":
        version = form_versions.form_version_create(actor=None, purpose_id=purpose.pk).version
    elif which == "missing":
        version = 99
    else:
        purpose = purpose_make()  # has no published form 1
    before = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        _record(patient, purpose, form, form_version=version)
    assert _code(refused) == "form_version_not_published"
    assert not Authorization.objects.exists()
    assert AuditEvent.objects.count() == before
    assert _stored_files(media) == []


@pytest.mark.parametrize(
    ("evidence", "kind", "code"),
    [
        (b"GIF89a" + b"\x00" * 20, "pdf", "evidence_type"),
        (b"<html>Jane Doe</html>", "pdf", "evidence_type"),
        (b"", "pdf", "evidence_empty"),
        (None, "pdf", "evidence_required"),
        (PNG, "pdf", "evidence_type_mismatch"),
        (PDF, "docx", "evidence_type"),
        (b"%PDF-" + b"0" * SCAN_MAX_BYTES, "pdf", "evidence_too_large"),
    ],
    ids=["gif", "html", "empty", "none", "png-declared-pdf", "unknown-kind", "too-large"],
)
def test_bad_evidence_is_refused_and_nothing_is_stored(signed, media, evidence, kind, code):
    patient, purpose, form = signed
    before = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        _record(patient, purpose, form, evidence=evidence, evidence_kind=kind)
    assert _code(refused) == code
    assert "Jane" not in str(refused.value)  # R-NO-PHI-LEAK
    assert not Authorization.objects.exists()
    assert AuditEvent.objects.count() == before
    assert _stored_files(media) == []


@pytest.mark.parametrize(("evidence", "kind"), [(PNG, "png"), (JPEG, "jpg")])
def test_images_are_accepted_as_evidence(signed, media, evidence, kind):
    patient, purpose, form = signed
    authorization = _record(patient, purpose, form, evidence=evidence, evidence_kind=kind)
    assert authorization.scan.name.endswith(f".{kind}")


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"signed_at": timezone.now() + timedelta(hours=1)}, "signed_in_future"),
        ({"signed_at": datetime(2026, 1, 1, 12, 0)}, "bad_signed_at"),
        ({"signer_name": "   "}, "signer_name_required"),
        ({"signed_by_representative": True, "representative_authority": " "}, "representative_authority_required"),
    ],
)
def test_invalid_signatures_are_refused_with_a_stable_code(signed, media, overrides, code):
    patient, purpose, form = signed
    with pytest.raises(ValidationError) as refused:
        _record(patient, purpose, form, **overrides)
    assert _code(refused) == code
    assert not Authorization.objects.exists()
    assert _stored_files(media) == []


def test_a_representative_signature_keeps_the_authority(signed):
    patient, purpose, form = signed
    authorization = _record(
        patient, purpose, form, signed_by_representative=True, representative_authority="Parent of a minor child"
    )
    assert authorization.signed_by_representative is True
    assert authorization.representative_authority == "Parent of a minor child"


# --- revocation -------------------------------------------------------------------------------------------


def test_r_revoke_anytime_external_revocation_ends_every_unrevoked_authorization_at_commit(signed, media):
    patient, purpose, form = signed
    first = _record(patient, purpose, form)
    second = authorization_make(patient=patient, purpose=purpose)
    other_purpose = authorization_make(patient=patient, purpose=purpose_make())
    assert _covered(first) and _covered(second)
    revocations = authorization_external_revoke(patient_id=patient.pk, purpose_id=purpose.pk)
    assert sorted(revocation.authorization_id for revocation in revocations) == sorted([first.pk, second.pk])
    assert all(revocation.channel == Revocation.Channel.EXTERNAL for revocation in revocations)
    assert all(revocation.revoked_at is not None for revocation in revocations)
    assert not _covered(first) and not _covered(second)
    assert _covered(other_purpose)
    audit = AuditEvent.objects.filter(action=actions.AUTHORIZATION_REVOKED).latest("id")
    assert audit.patient_id == patient.pk
    assert audit.details == {
        "purpose_id": purpose.pk, "channel": "external", "authorization_ids": sorted([first.pk, second.pk]),
    }


def test_external_revocation_keeps_the_letter_when_one_is_sent(signed, media):
    patient, purpose, form = signed
    _record(patient, purpose, form)
    [revocation] = authorization_external_revoke(
        patient_id=patient.pk, purpose_id=purpose.pk, evidence=PDF, evidence_kind="pdf"
    )
    assert revocation.scan.name.startswith("scans/")
    assert Path(media, revocation.scan.name).read_bytes() == PDF


def test_revoking_when_nothing_is_active_is_refused_with_nothing_to_revoke(signed):
    patient, purpose, form = signed
    with pytest.raises(ValidationError) as refused:
        authorization_external_revoke(patient_id=patient.pk, purpose_id=purpose.pk)
    assert _code(refused) == "nothing_to_revoke"
    _record(patient, purpose, form)
    authorization_external_revoke(patient_id=patient.pk, purpose_id=purpose.pk)
    count = Revocation.objects.count()
    with pytest.raises(ValidationError) as again:
        authorization_external_revoke(patient_id=patient.pk, purpose_id=purpose.pk)
    assert _code(again) == "nothing_to_revoke"
    assert Revocation.objects.count() == count


def test_bad_revocation_evidence_is_refused_and_nothing_is_revoked(signed, media):
    patient, purpose, form = signed
    authorization = _record(patient, purpose, form)
    files = _stored_files(media)
    with pytest.raises(ValidationError) as refused:
        authorization_external_revoke(
            patient_id=patient.pk, purpose_id=purpose.pk, evidence=b"not a pdf", evidence_kind="pdf"
        )
    assert _code(refused) == "evidence_type"
    assert _covered(authorization)
    assert _stored_files(media) == files
