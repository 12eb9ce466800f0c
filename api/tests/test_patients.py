"""The patients operations of the integration API: scopes, the batch upsert, search by record number or email
(POSTed, never in the URL), get by id, minimum necessary answers (R-MIN-NECESSARY), no PHI in any answer or the
audit trail (R-NO-PHI-LEAK), Idempotency-Key replays, and 422 shapes that never echo a value."""
import json

import pytest

from api.scopes import PATIENTS_READ, PATIENTS_WRITE, PURPOSES_READ
from audit import actions
from audit.models import AuditEvent
from consent.models import Patient
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db

UPSERT = "/api/v1/patients/upsert"
SEARCH = "/api/v1/patients/search"
PROBLEM = "application/problem+json"
PHI = ("Ada Synthetic", "ada.synthetic@example.org", "555-0142", "12 Hidden Lane", "1961-07-08")
ANSWER_KEYS = {
    "id", "external_id", "birth_year", "sex", "postal_code", "state", "last_visit", "refill_due", "time_zone",
    "language", "condition_codes", "program_codes", "created_at",
}


def ada(**overrides) -> dict:
    fields = {
        "external_id": "MRN-ADA",
        "email": "Ada.Synthetic@example.org",
        "full_name": "Ada Synthetic",
        "phone": "555-0142",
        "street_address": "12 Hidden Lane",
        "birth_date": "1961-07-08",
        "sex": "F",
        "postal_code": "02139",
        "state": "MA",
        "last_visit": "2025-03-04",
        "condition_codes": ["G47.33"],
        "program_codes": ["CPAP-RESUPPLY"],
    }
    return fields | overrides


def assert_no_phi(text: str) -> None:
    for secret in PHI:
        assert secret.lower() not in text.lower()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", UPSERT, {"items": [{"external_id": "MRN-1"}]}),
        ("post", SEARCH, {"external_id": "MRN-1"}),
        ("get", "/api/v1/patients/1", None),
    ],
)
def test_keys_without_the_patients_scope_get_403_and_nothing_happens(api_client, method, path, body):
    needed = PATIENTS_WRITE if path == UPSERT else PATIENTS_READ
    others = [PURPOSES_READ, PATIENTS_READ if needed == PATIENTS_WRITE else PATIENTS_WRITE]
    api = api_client(others)

    response = api.post(path, body) if method == "post" else api.get(path)

    assert response.status_code == 403
    assert response["Content-Type"] == PROBLEM and response.json()["code"] == "scope_missing"
    assert Patient.objects.count() == 0


def test_upsert_creates_then_updates_and_answers_per_item_without_phi(api_client):
    api = api_client([PATIENTS_WRITE])

    first = api.post(UPSERT, {"items": [ada(), ada(external_id="MRN-BAD", email="nope", full_name="X")]})

    assert first.status_code == 200
    body = first.json()
    assert (body["created"], body["updated"], body["unchanged"], body["rejected"]) == (1, 0, 0, 1)
    created, rejected = body["items"]
    patient = Patient.objects.get()
    assert created == {"index": 0, "status": "created", "patient_id": patient.pk, "errors": []}
    assert rejected["status"] == "rejected" and rejected["patient_id"] is None
    assert [(e["field"], e["code"]) for e in rejected["errors"]] == [("email", "bad_email")]
    assert_no_phi(first.content.decode())
    assert "nope" not in first.content.decode()

    second = api.post(UPSERT, {"items": [{"external_id": "MRN-ADA", "state": "NY"}, ada()]})

    assert second.status_code == 200
    assert [item["status"] for item in second.json()["items"]] == ["updated", "rejected"]
    assert second.json()["items"][1]["errors"][0]["code"] == "duplicate_in_batch"
    patient.refresh_from_db()
    assert (patient.state, patient.full_name) == ("NY", "Ada Synthetic")
    (event, _) = AuditEvent.objects.filter(action=actions.PATIENTS_UPSERTED).order_by("-id")
    assert event.actor_role == f"api_key:{api.key.pk}"
    assert_no_phi(json.dumps(event.details))


def test_search_by_external_id_and_by_email_answers_coded_attributes_only(api_client):
    """R-MIN-NECESSARY, R-NO-PHI-LEAK: the answer holds the id and coded attributes, never a direct identifier
    other than the record number the caller already sent."""
    api_client([PATIENTS_WRITE]).post(UPSERT, {"items": [ada()]})
    api = api_client([PATIENTS_READ])
    patient = Patient.objects.get()

    by_id = api.post(SEARCH, {"external_id": "MRN-ADA"})
    by_email = api.post(SEARCH, {"email": "ADA.synthetic@example.org"})
    direct = api.get(f"/api/v1/patients/{patient.pk}")

    for response in (by_id, by_email, direct):
        assert response.status_code == 200
        data = response.json()
        assert set(data) == ANSWER_KEYS
        assert (data["id"], data["external_id"], data["birth_year"], data["sex"]) == (patient.pk, "MRN-ADA", 1961, "F")
        assert (data["condition_codes"], data["program_codes"]) == (["G47.33"], ["CPAP-RESUPPLY"])
        assert data["last_visit"] == "2025-03-04"
        assert_no_phi(response.content.decode())
    searched = AuditEvent.objects.filter(action=actions.PATIENT_SEARCHED).order_by("id")
    assert [event.details for event in searched] == [{"by": "external_id", "found": True}, {"by": "email", "found": True}]
    assert all(event.patient_id == patient.pk for event in searched)


def test_search_and_get_answer_404_problem_when_nobody_matches(api_client):
    patient_make(email="someone@example.org")
    api = api_client([PATIENTS_READ])

    responses = [
        api.post(SEARCH, {"email": "nobody@example.org"}),
        api.post(SEARCH, {"external_id": "MRN-NONE"}),
        api.get("/api/v1/patients/999999"),
        api.get(f"/api/v1/patients/{2**70}"),
        api.get("/api/v1/patients/0"),
    ]

    for response in responses:
        assert response.status_code == 404
        assert response["Content-Type"] == PROBLEM and response.json()["code"] == "not_found"
    assert "nobody@example.org" not in responses[0].content.decode()


@pytest.mark.parametrize(
    "body",
    [{}, {"external_id": "MRN-1", "email": "a@example.org"}, {"email": None}, {"phone": "555"}],
)
def test_search_needs_exactly_one_key_and_answers_422_without_the_value(api_client, body):
    response = api_client([PATIENTS_READ]).post(SEARCH, body)

    assert response.status_code == 422
    assert response["Content-Type"] == PROBLEM and response.json()["code"] == "validation_failed"
    assert "a@example.org" not in response.content.decode() and "555" not in response.content.decode()


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"items": []}, "items", "batch_size"),
        ({"items": [{"external_id": f"M{n}"} for n in range(1001)]}, "items", "batch_size"),
        ({"items": [{"external_id": "M1", "nickname": "Secret Nick"}]}, "items.0.nickname", "extra_forbidden"),
        ({"items": [{"external_id": "M1", "full_name": "Secret\x00Nick"}]}, "items.0.full_name", "string_pattern_mismatch"),
        ({"items": [{"external_id": "M1", "full_name": "S" * 201}]}, "items.0.full_name", "string_too_long"),
        ({"items": [{"email": "secret.nick@example.org"}]}, "items.0.external_id", "missing"),
        ({"items": [ada(full_name="Secret Nick", language="fr")]}, "items.0.language", "literal_error"),
        ({"items": [ada(full_name="Secret Nick", language="")]}, "items.0.language", "literal_error"),
    ],
)
def test_upsert_422_names_the_field_and_a_stable_code_never_the_value(api_client, body, field, code):
    response = api_client([PATIENTS_WRITE]).post(UPSERT, body)

    assert response.status_code == 422
    problem = response.json()
    assert response["Content-Type"] == PROBLEM and problem["code"] == "validation_failed"
    assert (problem["errors"][0]["field"], problem["errors"][0]["code"]) == (field, code)
    assert "Secret" not in response.content.decode() and "secret.nick" not in response.content.decode()
    assert Patient.objects.count() == 0


def test_a_retry_with_the_same_idempotency_key_creates_once(api_client):
    api = api_client([PATIENTS_WRITE])
    body = {"items": [ada()]}

    first = api.post(UPSERT, body, idempotency_key="nightly-2026-12-02-batch-1")
    again = api.post(UPSERT, body, idempotency_key="nightly-2026-12-02-batch-1")

    assert first.status_code == again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and first.json()["created"] == 1
    assert Patient.objects.count() == 1
    assert AuditEvent.objects.filter(action=actions.PATIENTS_UPSERTED).count() == 1


def test_the_schema_declares_the_patients_operations_with_their_limits(client):
    schema = client.get("/api/v1/openapi.json").json()

    assert {"/api/v1/patients/upsert", "/api/v1/patients/search", "/api/v1/patients/{patient_id}"} <= set(schema["paths"])
    upsert_in = schema["components"]["schemas"]["UpsertIn"]["properties"]["items"]
    assert (upsert_in["minItems"], upsert_in["maxItems"]) == (1, 1000)
    patient_out = schema["components"]["schemas"]["PatientOut"]["properties"]
    assert set(patient_out) == ANSWER_KEYS
    assert "422" in schema["paths"]["/api/v1/patients/upsert"]["post"]["responses"]


def test_upsert_sets_refill_due_and_time_zone_and_get_answers_them(api_client):
    """Journeys read both (issue 14): the refill date (future allowed) and the patient's IANA time zone."""
    write, read = api_client([PATIENTS_WRITE]), api_client([PATIENTS_READ])

    created = write.post(UPSERT, {"items": [ada(refill_due="2027-01-15", time_zone="america/chicago")]})
    patient = Patient.objects.get()
    first = read.get(f"/api/v1/patients/{patient.pk}").json()
    cleared = write.post(UPSERT, {"items": [{"external_id": "MRN-ADA", "refill_due": "", "time_zone": ""}]})
    second = read.get(f"/api/v1/patients/{patient.pk}").json()

    assert created.json()["created"] == 1 and cleared.json()["updated"] == 1
    assert (first["refill_due"], first["time_zone"]) == ("2027-01-15", "America/Chicago")
    assert (second["refill_due"], second["time_zone"]) == (None, "")


def test_r_no_phi_leak_a_bad_time_zone_or_refill_due_is_rejected_with_codes_only(api_client):
    response = api_client([PATIENTS_WRITE]).post(
        UPSERT, {"items": [ada(time_zone="Atlantis/Capital"), ada(external_id="MRN-2", email="two@example.org",
                                                                  refill_due="2027-02-30")]}
    )

    body = response.json()
    assert response.status_code == 200 and body["rejected"] == 2
    assert [(e["field"], e["code"]) for item in body["items"] for e in item["errors"]] == [
        ("time_zone", "bad_time_zone"), ("refill_due", "bad_due_date")
    ]
    assert "Atlantis" not in response.content.decode() and "2027-02-30" not in response.content.decode()
    assert Patient.objects.count() == 0


def test_upsert_stores_the_patients_language_and_leaves_it_when_omitted(api_client):
    """Issue 17: the EHR sends the language a patient reads (en or es), as the CSV import can; a new patient
    without one reads English, and an update that omits it (or sends null) leaves it as it is."""
    write, read = api_client([PATIENTS_WRITE]), api_client([PATIENTS_READ])

    created = write.post(UPSERT, {"items": [ada(language="es"), ada(external_id="MRN-2", email="two@example.org")]})
    spanish, english = Patient.objects.get(language="es"), Patient.objects.get(language="en")
    answered = read.get(f"/api/v1/patients/{spanish.pk}").json()
    omitted = write.post(
        UPSERT, {"items": [{"external_id": "MRN-ADA", "state": "NY"}, {"external_id": "MRN-2", "language": None}]}
    )
    spanish.refresh_from_db()
    english.refresh_from_db()
    after_omitted = (spanish.language, spanish.state, english.language)
    back = write.post(UPSERT, {"items": [{"external_id": "MRN-ADA", "language": "en"}]})
    spanish.refresh_from_db()

    assert created.status_code == 200 and created.json()["created"] == 2
    assert (spanish.external_id, english.external_id) == ("MRN-ADA", "MRN-2")
    assert answered["language"] == "es"
    assert [item["status"] for item in omitted.json()["items"]] == ["updated", "unchanged"]
    assert after_omitted == ("es", "NY", "en")
    assert back.json()["updated"] == 1 and spanish.language == "en"


def test_upsert_with_an_unknown_language_is_a_422_naming_the_field_and_writes_nothing(api_client):
    """Issue 17: a language other than en or es refuses the whole request (problem+json naming the field, never
    the value sent): no patient created, none changed, no upsert audited."""
    write = api_client([PATIENTS_WRITE])
    write.post(UPSERT, {"items": [ada(language="es")]})
    audited = AuditEvent.objects.filter(action=actions.PATIENTS_UPSERTED).count()

    items = [{"external_id": "MRN-ADA", "language": "en"},
             ada(external_id="MRN-3", email="three@example.org", language="klingon")]

    response = write.post(UPSERT, {"items": items})

    assert response.status_code == 422 and response["Content-Type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert [(error["field"], error["code"]) for error in problem["errors"]] == [("items.1.language", "literal_error")]
    assert "klingon" not in response.content.decode()
    assert list(Patient.objects.values_list("language", flat=True)) == ["es"]
    assert AuditEvent.objects.filter(action=actions.PATIENTS_UPSERTED).count() == audited
