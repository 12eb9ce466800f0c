"""The authorizations operations: recording one captured elsewhere (published form only, evidence checked, the
signer's name never returned: R-NO-PHI-LEAK), a revocation that stops coverage when it commits (R-REVOKE-ANYTIME),
reading a patient's authorizations with their state, FHIR Consent R4/R5 and a searchset Bundle validated with
fhir.resources, scopes, and Idempotency-Key replays."""
import base64
import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone
from fhir.resources.bundle import Bundle as BundleR5
from fhir.resources.consent import Consent as ConsentR5
from fhir.resources.R4B.bundle import Bundle as BundleR4
from fhir.resources.R4B.consent import Consent as ConsentR4

from api.scopes import AUTHORIZATIONS_READ, AUTHORIZATIONS_WRITE, EVENTS_WRITE
from audit import actions
from audit.models import AuditEvent
from consent.models import Authorization, Revocation
from consent.selectors.coverage import authorization_covering_list
from consent.services import form_versions
from consent.services.authorizations import authorization_defect_record
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
FHIR = "application/fhir+json"
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
SIGNER = "Margaret Ellen Jones"
EMAIL = "margaret.jones@example.org"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def world():
    patient = patient_make(email=EMAIL, full_name=SIGNER, external_id="MRN-4471")
    purpose = purpose_make(code="cpap-supplies", name="CPAP supplies")
    form = form_published_make(purpose)
    return patient, purpose, form


def _body(patient, purpose, form, /, **overrides):
    body = {
        "patient_id": patient.pk,
        "purpose": purpose.code,
        "form_version": form.version,
        "signed_at": (timezone.now() - timedelta(days=2)).isoformat(),
        "signer_name": SIGNER,
        "signed_by_representative": False,
        "representative_authority": "",
        "evidence": {"content_type": "application/pdf", "data": base64.b64encode(PDF).decode()},
    }
    body |= overrides
    return body


def _no_phi(response) -> None:
    text = response.content.decode().lower()
    for value in (SIGNER.lower(), "margaret", EMAIL, "example.org", "mrn-4471"):
        assert value not in text, value


def _covering(patient, purpose) -> set[int]:
    return set(
        authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).values_list("id", flat=True)
    )


def test_r_no_phi_leak_record_an_external_authorization_201_without_the_signers_name(api_client, world):
    """R-NO-PHI-LEAK, R-AUTH-CORE-6: the signer's name is stored (encrypted) and never comes back."""
    patient, purpose, form = world
    api = api_client([AUTHORIZATIONS_WRITE])
    response = api.post("/api/v1/authorizations", _body(patient, purpose, form))
    assert response.status_code == 201, response.content
    authorization = Authorization.objects.get()
    body = response.json()
    assert body == {
        "id": authorization.pk,
        "patient_id": patient.pk,
        "purpose": "cpap-supplies",
        "form_version": 1,
        "channel": "external",
        "signed_at": body["signed_at"],
        "expires_at": body["expires_at"],
        "expiry_event": "",
        "signed_by_representative": False,
        "has_evidence": True,
        "revoked_at": None,
        "state": "active",
    }
    assert body["expires_at"] is not None
    assert authorization.signature_name == SIGNER and authorization.channel == Authorization.Channel.EXTERNAL
    assert _covering(patient, purpose) == {authorization.pk}
    _no_phi(response)
    granted = AuditEvent.objects.get(action=actions.AUTHORIZATION_GRANTED, object_id=str(authorization.pk))
    assert granted.actor_role == f"api_key:{api.key.pk}"


def test_a_representative_signature_is_recorded_and_the_authority_not_returned(api_client, world):
    patient, purpose, form = world
    response = api_client([AUTHORIZATIONS_WRITE]).post(
        "/api/v1/authorizations",
        _body(patient, purpose, form, signed_by_representative=True, representative_authority="Daughter, POA"),
    )
    assert response.status_code == 201
    assert response.json()["signed_by_representative"] is True
    assert "Daughter" not in response.content.decode()


def test_r_auth_immutable_an_unpublished_form_version_is_refused_and_nothing_is_stored(api_client, world):
    patient, purpose, form = world
    draft = form_versions.form_version_create(actor=None, purpose_id=purpose.pk)
    response = api_client([AUTHORIZATIONS_WRITE]).post(
        "/api/v1/authorizations", _body(patient, purpose, form, form_version=draft.version)
    )
    assert response.status_code == 422
    assert response["Content-Type"] == PROBLEM
    assert response.json()["code"] == "form_version_not_published"
    assert response.json()["errors"][0]["field"] == "form_version"
    assert not Authorization.objects.exists()
    _no_phi(response)


@pytest.mark.parametrize(
    ("evidence", "code"),
    [
        ({"content_type": "application/pdf", "data": "not base64!!"}, "evidence_not_base64"),
        ({"content_type": "application/pdf", "data": "abc"}, "evidence_not_base64"),
        ({"content_type": "application/pdf", "data": base64.b64encode(b"<html>hi</html>").decode()}, "evidence_type"),
        ({"content_type": "application/pdf", "data": base64.b64encode(PNG).decode()}, "evidence_type_mismatch"),
    ],
)
def test_bad_evidence_is_refused_422_with_a_stable_code_and_nothing_is_stored(api_client, world, evidence, code):
    patient, purpose, form = world
    response = api_client([AUTHORIZATIONS_WRITE]).post(
        "/api/v1/authorizations", _body(patient, purpose, form, evidence=evidence)
    )
    assert response.status_code == 422, response.content
    assert response.json()["code"] == code
    assert not Authorization.objects.exists()
    _no_phi(response)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"patient_id": 2**40}, "unknown_patient"),
        ({"purpose": "no-such-purpose"}, "unknown_purpose"),
        ({"signed_at": (timezone.now() + timedelta(days=1)).isoformat()}, "signed_in_future"),
        ({"signed_by_representative": True}, "representative_authority_required"),
        ({"signer_name": "Jane\x00Doe"}, "validation_failed"),
        ({"signed_at": "2026-01-01T10:00:00"}, "validation_failed"),
        ({"patient_id": 2**64}, "validation_failed"),
    ],
)
def test_refusals_have_stable_codes_and_never_repeat_the_value(api_client, world, overrides, code):
    patient, purpose, form = world
    response = api_client([AUTHORIZATIONS_WRITE]).post(
        "/api/v1/authorizations", _body(patient, purpose, form, **overrides)
    )
    assert response.status_code == 422, response.content
    assert response.json()["code"] == code
    assert not Authorization.objects.exists()
    _no_phi(response)
    assert "no-such-purpose" not in response.content.decode()


def test_a_retried_post_with_the_same_idempotency_key_records_once(api_client, world):
    patient, purpose, form = world
    api = api_client([AUTHORIZATIONS_WRITE])
    body = _body(patient, purpose, form)
    first = api.post("/api/v1/authorizations", body, idempotency_key="paper-77")
    replay = api.post("/api/v1/authorizations", body, idempotency_key="paper-77")
    assert first.status_code == replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()
    assert Authorization.objects.count() == 1
    _no_phi(replay)


def test_r_revoke_anytime_a_revocation_through_the_api_stops_coverage_at_commit(api_client, world):
    patient, purpose, form = world
    api = api_client([AUTHORIZATIONS_WRITE])
    recorded = api.post("/api/v1/authorizations", _body(patient, purpose, form)).json()
    older = authorization_make(patient=patient, purpose=purpose)
    other = authorization_make(patient=patient, purpose=purpose_make())
    assert _covering(patient, purpose) == {recorded["id"], older.pk}

    response = api.post(
        "/api/v1/authorizations/revocations",
        {"patient_id": patient.pk, "purpose": purpose.code,
         "evidence": {"content_type": "image/png", "data": base64.b64encode(PNG).decode()}},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["patient_id"] == patient.pk and body["purpose"] == "cpap-supplies"
    assert body["authorization_ids"] == sorted([recorded["id"], older.pk])
    assert body["revoked_at"]
    # Committed when the call returned: the one predicate no longer covers the patient for this purpose.
    assert _covering(patient, purpose) == set()
    assert set(
        authorization_covering_list(purpose_id=other.purpose_id, patient_ids=[patient.pk]).values_list("id", flat=True)
    ) == {other.pk}
    assert set(Revocation.objects.values_list("channel", flat=True)) == {"external"}
    assert Revocation.objects.get(authorization_id=older.pk).scan.name.endswith(".png")
    revoked = AuditEvent.objects.filter(action=actions.AUTHORIZATION_REVOKED).latest("id")
    assert revoked.actor_role == f"api_key:{api.key.pk}" and revoked.details["channel"] == "external"
    _no_phi(response)


def test_revoking_when_nothing_is_active_answers_409_nothing_to_revoke(api_client, world):
    patient, purpose, _ = world
    response = api_client([AUTHORIZATIONS_WRITE]).post(
        "/api/v1/authorizations/revocations", {"patient_id": patient.pk, "purpose": purpose.code}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "nothing_to_revoke"
    assert not Revocation.objects.exists()


def test_list_a_patients_authorizations_with_their_state_in_pages(api_client, world):
    patient, purpose, _ = world
    active = authorization_make(patient=patient, purpose=purpose, signed_ago=timedelta(days=30))
    expired = authorization_make(
        patient=patient, purpose=purpose, signed_ago=timedelta(days=400), expires_in=-timedelta(days=1)
    )
    defective = authorization_make(patient=patient, purpose=purpose_make())
    authorization_defect_record(actor=None, authorization_id=defective.pk, reason="defect_compound")
    revoked = authorization_make(patient=patient, purpose=purpose_make())
    api_client([AUTHORIZATIONS_WRITE]).post(
        "/api/v1/authorizations/revocations", {"patient_id": patient.pk, "purpose": revoked.purpose.code}
    )
    authorization_make(patient=patient_make(), purpose=purpose)  # someone else's
    api = api_client([AUTHORIZATIONS_READ])

    first = api.get("/api/v1/authorizations", patient_id=patient.pk, limit=3)
    assert first.status_code == 200
    page_one = first.json()
    second = api.get("/api/v1/authorizations", patient_id=patient.pk, limit=3, cursor=page_one["next_cursor"]).json()
    states = {item["id"]: item["state"] for item in page_one["items"] + second["items"]}
    assert states == {
        active.pk: "active", expired.pk: "expired", defective.pk: "defective", revoked.pk: "revoked",
    }
    assert [item["id"] for item in page_one["items"]] == [revoked.pk, defective.pk, expired.pk]
    assert second["next_cursor"] is None
    revoked_item = next(item for item in page_one["items"] if item["id"] == revoked.pk)
    assert revoked_item["revoked_at"] is not None
    _no_phi(first)
    viewed = AuditEvent.objects.filter(action=actions.PATIENT_VIEWED, patient_id=patient.pk).latest("id")
    assert viewed.actor_role == f"api_key:{api.key.pk}"
    assert api.get("/api/v1/authorizations", patient_id=2**40).status_code == 404


def test_get_one_authorization_and_404_for_unknown_or_huge_ids(api_client, world):
    patient, purpose, _ = world
    authorization = authorization_make(patient=patient, purpose=purpose)
    api = api_client([AUTHORIZATIONS_READ])
    response = api.get(f"/api/v1/authorizations/{authorization.pk}")
    assert response.status_code == 200
    assert response.json()["id"] == authorization.pk and response.json()["state"] == "active"
    assert response.json()["form_version"] is None and response.json()["channel"] == "web"
    _no_phi(response)
    for missing in (0, 999999, 2**63, 2**70, -1):
        answer = api.get(f"/api/v1/authorizations/{missing}")
        assert answer.status_code in (404, 422), missing
        assert answer["Content-Type"] == PROBLEM


@pytest.mark.parametrize(("version", "model"), [("R4", ConsentR4), ("R5", ConsentR5)])
def test_fhir_consent_of_one_authorization_is_valid(api_client, world, version, model):
    patient, purpose, form = world
    recorded = api_client([AUTHORIZATIONS_WRITE]).post("/api/v1/authorizations", _body(patient, purpose, form)).json()
    response = api_client([AUTHORIZATIONS_READ]).get(f"/api/v1/authorizations/{recorded['id']}/fhir", version=version)
    assert response.status_code == 200
    assert response["Content-Type"] == FHIR
    resource = json.loads(response.content)
    consent = model.model_validate(resource)
    assert consent.id == f"authorization-{recorded['id']}" and consent.status == "active"
    assert SIGNER not in response.content.decode() and EMAIL not in response.content.decode()
    exported = AuditEvent.objects.filter(action=actions.AUTHORIZATION_FHIR_EXPORTED).latest("id")
    assert exported.details == {"version": version.lower(), "via": "api"}


@pytest.mark.parametrize(("version", "model"), [("R4", BundleR4), ("R5", BundleR5)])
def test_fhir_bundle_of_a_patients_authorizations_is_a_valid_searchset(api_client, world, version, model):
    patient, purpose, _ = world
    first = authorization_make(patient=patient, purpose=purpose)
    second = authorization_make(patient=patient, purpose=purpose_make())
    third = authorization_make(patient=patient, purpose=purpose_make())
    authorization_make(patient=patient_make(), purpose=purpose)
    api = api_client([AUTHORIZATIONS_READ])

    response = api.get("/api/v1/authorizations/fhir", patient_id=patient.pk, version=version, limit=2)

    assert response.status_code == 200
    assert response["Content-Type"] == FHIR
    raw = json.loads(response.content)
    bundle = model.model_validate(raw)
    assert bundle.type == "searchset" and bundle.total == 3
    assert [entry["resource"]["id"] for entry in raw["entry"]] == [
        f"authorization-{third.pk}", f"authorization-{second.pk}"
    ]
    assert all(entry["search"]["mode"] == "match" for entry in raw["entry"])
    assert all(entry["resource"]["resourceType"] == "Consent" for entry in raw["entry"])
    assert raw["entry"][0]["fullUrl"].endswith(f"/api/v1/authorizations/{third.pk}/fhir")
    next_link = next(link["url"] for link in raw["link"] if link["relation"] == "next")
    query = parse_qs(urlsplit(next_link).query)
    assert query["patient_id"] == [str(patient.pk)] and query["version"] == [version]
    rest = json.loads(api.get("/api/v1/authorizations/fhir", patient_id=patient.pk, version=version, limit=2,
                              cursor=query["cursor"][0]).content)
    assert [entry["resource"]["id"] for entry in rest["entry"]] == [f"authorization-{first.pk}"]
    assert all(link["relation"] != "next" for link in rest["link"])
    model.model_validate(rest)


def test_fhir_bundle_for_a_patient_without_authorizations_is_empty_and_valid(api_client):
    patient = patient_make()
    raw = json.loads(api_client([AUTHORIZATIONS_READ]).get("/api/v1/authorizations/fhir", patient_id=patient.pk).content)
    bundle = BundleR5.model_validate(raw)
    assert bundle.total == 0 and not bundle.entry


def test_fhir_version_must_be_r4_or_r5(api_client, world):
    patient, purpose, _ = world
    authorization = authorization_make(patient=patient, purpose=purpose)
    response = api_client([AUTHORIZATIONS_READ]).get(f"/api/v1/authorizations/{authorization.pk}/fhir", version="R6")
    assert response.status_code == 422 and response["Content-Type"] == PROBLEM


def test_keys_without_the_scopes_get_403_and_nothing_happens(api_client, world):
    patient, purpose, form = world
    authorization = authorization_make(patient=patient, purpose=purpose)
    reader = api_client([AUTHORIZATIONS_READ])
    assert reader.post("/api/v1/authorizations", _body(patient, purpose, form)).status_code == 403
    assert reader.post(
        "/api/v1/authorizations/revocations", {"patient_id": patient.pk, "purpose": purpose.code}
    ).status_code == 403
    writer = api_client([AUTHORIZATIONS_WRITE, EVENTS_WRITE])
    for path in (
        "/api/v1/authorizations",
        f"/api/v1/authorizations/{authorization.pk}",
        f"/api/v1/authorizations/{authorization.pk}/fhir",
        "/api/v1/authorizations/fhir",
    ):
        refused = writer.get(path, patient_id=patient.pk)
        assert refused.status_code == 403, path
        assert refused.json()["code"] == "scope_missing"
    assert Authorization.objects.count() == 1 and not Revocation.objects.exists()
    assert _covering(patient, purpose) == {authorization.pk}


def test_openapi_declares_the_fhir_content_type_and_the_operations(client):
    schema = client.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    for path in ("/api/v1/authorizations/{authorization_id}/fhir", "/api/v1/authorizations/fhir"):
        content = paths[path]["get"]["responses"]["200"]["content"]
        assert list(content) == [FHIR]
    assert {"post", "get"} <= set(paths["/api/v1/authorizations"])
    assert "post" in paths["/api/v1/authorizations/revocations"]
    assert {"post", "get"} <= set(paths["/api/v1/events"])
    assert "post" in paths["/api/v1/events/batch"] and "get" in paths["/api/v1/events/types"]
    created = paths["/api/v1/authorizations"]["post"]["responses"]
    assert "201" in created and "application/problem+json" in created["422"]["content"]


def test_the_largest_evidence_the_schema_allows_fits_in_a_request_body(api_client, world):
    """The schema's maxLength for evidence is a full 10 MB scan, and a body that carries it is answered by the API
    (which reads its bodies against API_MAX_BODY_BYTES), not refused by Django's smaller form limit before it."""
    from api.routers.authorizations import EVIDENCE_BASE64_MAX
    from consent.services.written import SCAN_MAX_BYTES

    assert EVIDENCE_BASE64_MAX * 3 // 4 >= SCAN_MAX_BYTES

    patient, purpose, form = world
    data = base64.b64encode(b"%PDF-" + b"0" * (SCAN_MAX_BYTES - 5)).decode()
    assert len(data) <= EVIDENCE_BASE64_MAX
    body = _body(patient, purpose, form, evidence={"content_type": "application/pdf", "data": data},
                 signer_name="\u00e9" * 200, representative_authority="\u00e9" * 500, signed_by_representative=True)
    response = api_client([AUTHORIZATIONS_WRITE]).post("/api/v1/authorizations", body)
    assert response.status_code == 201, response.content[:300]
    assert Authorization.objects.get().scan.size == SCAN_MAX_BYTES
