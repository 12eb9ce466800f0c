"""FHIR Consent export (R4 via fhir.resources' R4B models, and R5) and Bundle import: validated structure, the
codes we rely on checked by us, a report that names reasons and never PHI (R-NO-PHI-LEAK), round trips."""
import base64
import hashlib
import json
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone
from fhir.resources.consent import Consent as ConsentR5
from fhir.resources.R4B.consent import Consent as ConsentR4

from audit.models import AuditEvent
from consent import fhir
from consent.models import Authorization, AuthorizationDefect, Revocation
from consent.selectors.coverage import authorization_covering_list
from consent.services.authorizations import (
    authorization_defect_record,
    authorization_grant,
    authorization_revoke,
    authorizations_revoke_locked,
)
from consent.services.fhir import fhir_bundle_import
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n% signed authorization\n%%EOF\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def patient():
    return patient_make(external_id="MRN-20931", email="round.trip@example.org")


@pytest.fixture
def purpose():
    return purpose_make(code="cpap-supplies", name="CPAP supplies")


def _with_pdf(authorization):
    # The one update the append-only trigger allows: attaching the PDF copy once.
    name = default_storage.save("authorizations/copy.pdf", ContentFile(PDF))
    Authorization.objects.filter(pk=authorization.pk).update(pdf=name)
    return Authorization.objects.get(pk=authorization.pk)


def _bundle(*resources) -> bytes:
    return json.dumps(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    ).encode()


def _codes(codings):
    return {(coding["system"], coding["code"]) for coding in codings}


# --- export -----------------------------------------------------------------------------------------------


def test_r4_export_validates_and_carries_hmarkt_local_code_period_status_and_the_pdf(patient, purpose):
    authorization = _with_pdf(
        authorization_make(patient=patient, purpose=purpose, text_hash="ab" * 32, document_text="text")
    )

    resource = fhir.authorization_to_fhir(authorization, version="r4")

    ConsentR4.model_validate(resource)  # the structure, once more, from the JSON itself
    assert resource["status"] == "active"
    assert resource["patient"] == {"identifier": {"system": fhir.PATIENT_SYSTEM, "value": "MRN-20931"}}
    assert resource["provision"]["type"] == "permit"
    assert _codes(resource["provision"]["purpose"]) == {
        ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HMARKT"),
        (fhir.PURPOSE_SYSTEM, "cpap-supplies"),
    }
    period = resource["provision"]["period"]
    assert ConsentR4.model_validate(resource).provision.period.start == authorization.signed_at
    assert ConsentR4.model_validate(resource).provision.period.end == authorization.expires_at
    assert set(period) == {"start", "end"}
    assert resource["category"][0]["coding"][0]["code"] == "59284-0"
    attachment = resource["sourceAttachment"]
    assert attachment["contentType"] == "application/pdf"
    assert base64.b64decode(attachment["data"]) == PDF
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(PDF).digest()).decode()
    assert attachment["extension"] == [{"url": fhir.TEXT_HASH_EXTENSION, "valueString": "ab" * 32}]
    assert attachment["size"] == len(PDF)  # unsignedInt: a number in R4 (R5's integer64 is a string)
    # A marketing authorization is a HIPAA authorization under 164.508: consentpolicycodes#hipaa-auth, not OPTIN.
    assert resource["policyRule"] == {
        "coding": [{"system": fhir.CONSENT_POLICY_SYSTEM, "code": "hipaa-auth", "display": "HIPAA Authorization"}]
    }
    assert resource["policy"] == [{"uri": fhir.HIPAA_164_508}]


def test_r5_export_validates_with_subject_decision_and_a_list_of_provisions(patient, purpose):
    authorization = authorization_make(patient=patient, purpose=purpose)

    resource = fhir.authorization_to_fhir(authorization, version="r5")

    model = ConsentR5.model_validate(resource)
    assert resource["status"] == "active" and resource["decision"] == "permit"
    assert "patient" not in resource and "scope" not in resource and "dateTime" not in resource
    assert resource["subject"]["identifier"]["value"] == "MRN-20931"
    assert _codes(resource["provision"][0]["purpose"]) == {
        ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HMARKT"),
        (fhir.PURPOSE_SYSTEM, "cpap-supplies"),
    }
    assert model.provision[0].period.start == authorization.signed_at
    assert model.provision[0].period.end == authorization.expires_at
    assert resource["date"] == timezone.localtime(authorization.signed_at).date().isoformat()


def test_a_patient_without_record_number_is_an_opaque_reference_and_an_event_rides_in_an_extension(purpose):
    patient = patient_make()
    authorization = authorization_grant(
        actor=None, patient=patient, purpose=purpose, expires_at=None, expiry_event="when you stop renting"
    )

    resource = fhir.authorization_to_fhir(authorization, version="r4")

    assert resource["patient"] == {"reference": f"Patient/{patient.pk}"}
    assert "end" not in resource["provision"]["period"]
    assert resource["extension"] == [{"url": fhir.EXPIRY_EVENT_EXTENSION, "valueString": "when you stop renting"}]


@pytest.mark.parametrize(
    ("end", "r4", "r5"),
    [("revoked", "inactive", "inactive"), ("expired", "inactive", "inactive"), ("defect", "rejected", "inactive")],
)
def test_r_auth_defective_export_status_follows_the_predicate(patient, purpose, end, r4, r5):
    """R-AUTH-DEFECTIVE: revoked and expired are inactive; a defective authorization is rejected in R4
    (R5 has no "rejected")."""
    if end == "expired":
        authorization = authorization_make(
            patient=patient, purpose=purpose, signed_ago=timedelta(days=30), expires_in=-timedelta(days=1)
        )
    else:
        authorization = authorization_make(patient=patient, purpose=purpose)
    if end == "revoked":
        authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")
    if end == "defect":
        authorization_defect_record(
            actor=None, authorization_id=authorization.pk, reason=AuthorizationDefect.Reason.COMPOUND
        )

    assert fhir.authorization_to_fhir(authorization, version="r4")["status"] == r4
    assert fhir.authorization_to_fhir(authorization, version="r5")["status"] == r5


def test_r_min_necessary_export_view_is_for_compliance_and_audited(verified_client, patient, purpose):
    """R-MIN-NECESSARY, R-SEC-AUDIT: the download is for compliance officers, audited with ids only."""
    authorization = authorization_make(patient=patient, purpose=purpose)
    officer = verified_client.sign_in(role="compliance officer")

    response = verified_client.get(f"/consent/fhir/authorizations/{authorization.pk}/r5.json")
    unknown_version = verified_client.get(f"/consent/fhir/authorizations/{authorization.pk}/r3.json")

    assert response.status_code == 200 and response["Content-Type"] == "application/fhir+json"
    assert json.loads(response.content)["decision"] == "permit"
    assert unknown_version.status_code == 404
    event = AuditEvent.objects.get(action="authorization.fhir_exported")
    assert event.actor == officer and event.details == {"version": "r5"} and event.patient_id == patient.pk


# --- import -----------------------------------------------------------------------------------------------


def _exported(patient, purpose, version, **extra):
    """A Consent as we export it, for an authorization that then never existed here (rolled back)."""
    with transaction.atomic():
        authorization = authorization_make(patient=patient, purpose=purpose, **extra)
        resource = fhir.authorization_to_fhir(authorization, version=version)
        transaction.set_rollback(True)
    assert not Authorization.objects.filter(pk=authorization.pk).exists()
    return resource, authorization


def test_r_no_phi_leak_import_rejects_bad_entries_with_reason_codes_and_keeps_the_good_one(
    verified_client, patient, purpose
):
    """R-NO-PHI-LEAK: a bogus status, a purpose without HMARKT, an unknown patient are each rejected with
    their reason; the report names entries by number and codes, never a value from the file; the valid
    entry is imported."""
    good, _ = _exported(patient, purpose, "r4")
    bogus_status, _ = _exported(patient, purpose, "r4")
    bogus_status["status"] = "totally-active"
    no_hmarkt, _ = _exported(patient, purpose, "r5")
    no_hmarkt["provision"][0]["purpose"] = [c for c in no_hmarkt["provision"][0]["purpose"] if c["code"] != "HMARKT"]
    stranger, _ = _exported(patient, purpose, "r4")
    stranger["patient"]["identifier"]["value"] = "MRN-UNKNOWN-77"
    officer = verified_client.sign_in(role="compliance officer")
    upload = SimpleUploadedFile("bundle.json", _bundle(good, bogus_status, no_hmarkt, stranger, {"hello": 1}))

    response = verified_client.post("/consent/fhir/import/", {"bundle": upload})

    assert response.status_code == 200
    page = response.content.decode()
    report = response.context["report"]
    assert [(e.number, e.outcome, e.reason) for e in report.entries] == [
        (1, "created", ""),
        (2, "rejected", "bad_status"),
        (3, "rejected", "missing_hmarkt"),
        (4, "rejected", "unknown_patient"),
        (5, "rejected", "not_a_consent"),
    ]
    assert report.accepted == 1 and report.rejected == 4
    assert "MRN-UNKNOWN-77" not in page and "totally-active" not in page and "MRN-20931" not in page
    imported = Authorization.objects.get()
    assert imported.channel == "import" and imported.recorded_by == officer
    event = AuditEvent.objects.get(action="fhir.imported")
    assert event.details["created"] == 1 and event.details["rejected"] == 4
    assert event.details["reasons"] == ["bad_status", "missing_hmarkt", "not_a_consent", "unknown_patient"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r["provision"].update(type="maybe"), "bad_provision_type"),
        (lambda r: r["provision"]["period"].pop("start"), "missing_period_start"),
        (lambda r: r["provision"].update(purpose=[r["provision"]["purpose"][0]]), "missing_purpose_code"),
        (lambda r: r["provision"]["purpose"][1].update(code="no-such-purpose"), "unknown_purpose"),
        (lambda r: r.update(patient={"reference": "Patient/1"}), "missing_patient_identifier"),
        (lambda r: r.update(status="draft"), "status_not_imported"),
        (lambda r: r["provision"].update(type="deny"), "deny_not_imported"),
        (lambda r: r["provision"]["period"].pop("end"), "no_expiry"),
        (lambda r: r.update(status=7), "invalid_fhir_r4"),
    ],
)
def test_import_checks_the_codes_it_relies_on(patient, purpose, change, reason):
    resource, _ = _exported(patient, purpose, "r4")
    change(resource)

    report = fhir_bundle_import(actor=None, raw=_bundle(resource))

    assert [(e.outcome, e.reason) for e in report.entries] == [("rejected", reason)]
    assert not Authorization.objects.exists()


def test_a_file_that_is_not_a_bundle_gets_a_clear_message(verified_client):
    verified_client.sign_in(role="compliance officer")

    not_json = verified_client.post("/consent/fhir/import/", {"bundle": SimpleUploadedFile("a.json", b"{nope")})
    not_bundle = verified_client.post(
        "/consent/fhir/import/", {"bundle": SimpleUploadedFile("a.json", b'{"resourceType": "Patient"}')}
    )
    nothing = verified_client.post("/consent/fhir/import/", {})

    assert not_json.status_code == 400 and b"The file is not JSON." in not_json.content
    assert not_bundle.status_code == 400 and b"The file is not a FHIR Bundle." in not_bundle.content
    assert nothing.status_code == 400 and b"Choose a JSON file to import." in nothing.content
    assert not AuditEvent.objects.filter(action="fhir.imported").exists()


@pytest.mark.parametrize("version", ["r4", "r5"])
def test_round_trip_export_import_keeps_patient_purpose_period_and_status(patient, purpose, version):
    """Export (R4 or R5) → import → the same patient, purpose, period and status; exporting the import
    gives the same Consent again, but for its identifiers."""
    resource, original = _exported(patient, purpose, version)

    report = fhir_bundle_import(actor=None, raw=_bundle(resource))

    assert [(e.outcome, e.version) for e in report.entries] == [("created", version)]
    imported = Authorization.objects.get()
    assert (imported.patient_id, imported.purpose_id) == (patient.pk, purpose.pk)
    assert (imported.signed_at, imported.expires_at) == (original.signed_at, original.expires_at)
    assert authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).get() == imported
    again = fhir.authorization_to_fhir(imported, version=version)
    for key in ("id", "identifier"):
        again.pop(key), resource.pop(key)
    assert again == resource


@pytest.mark.parametrize("version", ["r4", "r5"])
def test_round_trip_of_a_revoked_authorization_stays_inactive(patient, purpose, version):
    """An inactive consent we do not hold is recorded as it was: the authorization and its revocation."""
    with transaction.atomic():
        authorization = authorization_make(patient=patient, purpose=purpose)
        # The non-durable revocation helper, so that the savepoint can roll it back with the authorization.
        authorizations_revoke_locked(actor=None, authorization_ids=[authorization.pk], channel="portal")
        resource = fhir.authorization_to_fhir(authorization, version=version)
        transaction.set_rollback(True)
    assert resource["status"] == "inactive"

    report = fhir_bundle_import(actor=None, raw=_bundle(resource))

    assert [e.outcome for e in report.entries] == ["created"]
    imported = Authorization.objects.get()
    assert imported.revocation.channel == Revocation.Channel.IMPORT
    assert not authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists()
    assert fhir.authorization_to_fhir(imported, version=version)["status"] == "inactive"


def test_r_revoke_anytime_an_inactive_consent_revokes_the_matching_authorization_and_twice_is_harmless(
    patient, purpose
):
    """R-REVOKE-ANYTIME: an inactive consent for an authorization we hold revokes it when the import commits;
    importing it again, or an active copy of one we hold, changes nothing."""
    authorization = authorization_make(patient=patient, purpose=purpose)
    active = fhir.authorization_to_fhir(authorization, version="r4")
    inactive = dict(active, status="inactive")

    first = fhir_bundle_import(actor=None, raw=_bundle(active, inactive))
    second = fhir_bundle_import(actor=None, raw=_bundle(inactive))

    assert [e.outcome for e in first.entries] == ["already_recorded", "revoked"]
    assert [e.outcome for e in second.entries] == ["already_recorded"]
    assert Authorization.objects.count() == 1
    assert Revocation.objects.get().channel == Revocation.Channel.IMPORT
    assert not authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists()
    assert AuditEvent.objects.filter(action="authorization.revoked", object_id=str(patient.pk)).count() == 1


def test_an_imported_pdf_is_kept_as_the_signed_copy(patient, purpose):
    with transaction.atomic():
        resource = fhir.authorization_to_fhir(
            _with_pdf(authorization_make(patient=patient, purpose=purpose)), version="r5"
        )
        transaction.set_rollback(True)

    fhir_bundle_import(actor=None, raw=_bundle(resource))

    imported = Authorization.objects.get()
    assert imported.pdf.read() == PDF
    assert base64.b64decode(fhir.authorization_to_fhir(imported, version="r5")["sourceAttachment"][0]["data"]) == PDF


def _purpose_of_use(resource, version, codes):
    provision = resource["provision"] if version == "r4" else resource["provision"][0]
    local = [c for c in provision["purpose"] if c["system"] == fhir.PURPOSE_SYSTEM]
    provision["purpose"] = [{"system": fhir.ACT_REASON_SYSTEM, "code": code} for code in codes] + local


@pytest.mark.parametrize("version", ["r4", "r5"])
def test_r_purpose_kind_a_treatment_consent_round_trips_as_treatment_and_never_as_marketing(patient, version):
    """R-PURPOSE-KIND: a treatment-kind purpose (refill reminders) exports with TREAT under 164.506 and imports
    back; a consent whose purpose of use is not its purpose's kind is rejected, and nothing is written."""
    refills = purpose_make(code="cpap-refills", name="CPAP refill reminders", kind="treatment")
    marketing = purpose_make(code="cpap-offers", name="CPAP offers")
    treatment, _ = _exported(patient, refills, version)
    provision = treatment["provision"] if version == "r4" else treatment["provision"][0]
    assert (fhir.ACT_REASON_SYSTEM, "TREAT") in _codes(provision["purpose"])
    assert (fhir.ACT_REASON_SYSTEM, "HMARKT") not in _codes(provision["purpose"])
    treat_for_marketing, _ = _exported(patient, marketing, version)
    _purpose_of_use(treat_for_marketing, version, ["TREAT"])
    hmarkt_for_treatment, _ = _exported(patient, refills, version)
    _purpose_of_use(hmarkt_for_treatment, version, ["HMARKT"])
    both, _ = _exported(patient, marketing, version)
    _purpose_of_use(both, version, ["HMARKT", "TREAT"])

    rejected = fhir_bundle_import(actor=None, raw=_bundle(treat_for_marketing, hmarkt_for_treatment, both))
    assert not Authorization.objects.exists()
    imported = fhir_bundle_import(actor=None, raw=_bundle(treatment))

    assert [(e.outcome, e.reason) for e in rejected.entries] == [
        ("rejected", "missing_hmarkt"),
        ("rejected", "missing_treat"),
        ("rejected", "mixed_purpose_of_use"),
    ]
    assert [e.outcome for e in imported.entries] == ["created"]
    assert Authorization.objects.get().purpose == refills
