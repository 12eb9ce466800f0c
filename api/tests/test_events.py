"""The events operations: scopes (events:write to post and to read the vocabulary, events:read to list), 201 for a
new event and 200 `duplicate` for the same one again, 409 for the same id with another body, stable refusal codes
that never repeat a value (R-NO-PHI-LEAK), Idempotency-Key replays, the batch, and cursor pages."""
import json
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from api.scopes import EVENTS_READ, EVENTS_WRITE, PATIENTS_READ
from audit import actions
from audit.models import AuditEvent
from consent.events import EVENT_TYPES
from consent.models import PatientEvent
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


@pytest.fixture
def patient():
    return patient_make(email="jane.doe@example.org", full_name="Jane Doe")


def _body(patient, **overrides):
    body = {
        "event_id": "appt-20261201-0007",
        "type": "appointment.booked",
        "patient_id": patient.pk,
        "occurred_at": (timezone.now() - timedelta(minutes=10)).isoformat(),
        "attributes": {"appointment_type": "CPAP-FIT", "appointment_date": "2026-12-14", "location_code": "NORTH-01"},
    }
    body |= overrides
    return body


def _writer(api_client, source="ehr-north"):
    return api_client([EVENTS_WRITE, EVENTS_READ], source=source)


def test_post_event_records_it_from_the_keys_source_201(api_client, patient):
    api = _writer(api_client)
    response = api.post("/api/v1/events", _body(patient))
    assert response.status_code == 201, response.content
    body = response.json()
    event = PatientEvent.objects.get()
    assert body == {
        "id": event.pk,
        "event_id": "appt-20261201-0007",
        "source": "ehr-north",
        "type": "appointment.booked",
        "patient_id": patient.pk,
        "occurred_at": body["occurred_at"],
        "attributes": {"appointment_type": "CPAP-FIT", "appointment_date": "2026-12-14", "location_code": "NORTH-01"},
        "received_at": body["received_at"],
        "duplicate": False,
    }
    assert event.source == api.key.source == "ehr-north"
    audit = AuditEvent.objects.get(action=actions.PATIENT_EVENT_RECORDED)
    assert audit.actor_role == f"api_key:{api.key.pk}" and audit.patient_id == patient.pk


def test_the_same_event_again_answers_200_duplicate_and_stores_nothing(api_client, patient):
    api = _writer(api_client)
    body = _body(patient)
    first = api.post("/api/v1/events", body)
    again = api.post("/api/v1/events", body)  # a new Idempotency-Key: the event id decides
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["duplicate"] is True and again.json()["id"] == first.json()["id"]
    assert PatientEvent.objects.count() == 1


def test_the_same_event_id_with_another_body_answers_409_event_id_conflict(api_client, patient):
    api = _writer(api_client)
    api.post("/api/v1/events", _body(patient))
    # Another type under the same id.
    conflict = api.post("/api/v1/events", _body(patient, type="appointment.completed"))
    assert conflict.status_code == 409
    assert conflict["Content-Type"] == PROBLEM
    assert conflict.json()["code"] == "event_id_conflict"
    assert PatientEvent.objects.count() == 1


def test_another_source_may_use_the_same_event_id(api_client, patient):
    assert _writer(api_client, "ehr-north").post("/api/v1/events", _body(patient)).status_code == 201
    assert _writer(api_client, "crm").post("/api/v1/events", _body(patient)).status_code == 201
    assert set(PatientEvent.objects.values_list("source", flat=True)) == {"ehr-north", "crm"}


def test_a_retry_with_the_same_idempotency_key_replays_the_first_answer(api_client, patient):
    api = _writer(api_client)
    body = _body(patient)
    first = api.post("/api/v1/events", body, idempotency_key="retry-1")
    replay = api.post("/api/v1/events", body, idempotency_key="retry-1")
    assert first.status_code == replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert PatientEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "status", "code", "field"),
    [
        ({"type": "appointment.teleported"}, 422, "unknown_event_type", "type"),
        ({"attributes": {"appointment_type": "CPAP-FIT", "colour": "blue"}}, 422, "unknown_attribute", "attributes"),
        ({"attributes": {"appointment_date": "2026-02-30"}}, 422, "bad_attribute_value", "attributes.appointment_date"),
        ({"occurred_at": (timezone.now() + timedelta(days=1)).isoformat()}, 422, "occurred_in_future", "occurred_at"),
        ({"patient_id": 2**40}, 422, "unknown_patient", "patient_id"),
        ({"type": "program.enrolled", "attributes": {}}, 422, "missing_attribute", "attributes.program_code"),
    ],
)
def test_refusals_have_stable_codes_and_never_repeat_the_value(api_client, patient, overrides, status, code, field):
    api = _writer(api_client)
    response = api.post("/api/v1/events", _body(patient, **overrides))
    assert response.status_code == status
    assert response["Content-Type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == code
    assert problem["errors"][0]["field"] == field
    text = response.content.decode()
    for value in ("teleported", "blue", "2026-02-30", str(2**40)):
        assert value not in text
    assert not PatientEvent.objects.exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"attributes": {"appointment_type": "Jane Doe has a cough"}},
        {"attributes": {"appointment_type": 1.5}},
        {"attributes": {"Appointment Type": "X"}},
        {"event_id": "has spaces"},
        {"occurred_at": "2026-12-01T10:00:00"},  # no time zone
        {"occurred_at": "0001-01-01T00:00:00+01:00"},
        {"patient_id": 2**70},
        {"type": "x" * 41},
    ],
)
def test_schema_refusals_are_422_problems_without_the_value(api_client, patient, overrides):
    response = _writer(api_client).post("/api/v1/events", _body(patient, **overrides))
    assert response.status_code == 422, response.content
    assert response.json()["code"] in ("validation_failed", "bad_occurred_at")
    assert "Jane" not in response.content.decode() and "cough" not in response.content.decode()


def test_a_key_without_the_scope_gets_403_and_nothing_is_stored(api_client, patient):
    reader = api_client([EVENTS_READ])
    refused = reader.post("/api/v1/events", _body(patient))
    assert refused.status_code == 403 and refused.json()["code"] == "scope_missing"
    assert not PatientEvent.objects.exists()
    assert reader.get("/api/v1/events/types").status_code == 403
    writer = api_client([EVENTS_WRITE])
    assert writer.get("/api/v1/events").status_code == 403
    assert api_client([PATIENTS_READ]).post("/api/v1/events/batch", {"events": []}).status_code == 403


def test_list_events_filtered_newest_first_in_cursor_pages(api_client, patient):
    api = _writer(api_client)
    other = patient_make()
    for n in range(3):
        api.post("/api/v1/events", _body(patient, event_id=f"e-{n}"))
    api.post("/api/v1/events", _body(other, event_id="o-1", type="refill.due", attributes={"supply_type": "CPAP-MASK"}))

    first = api.get("/api/v1/events", patient_id=patient.pk, limit=2).json()
    assert [item["event_id"] for item in first["items"]] == ["e-2", "e-1"]
    assert first["next_cursor"]
    second = api.get("/api/v1/events", patient_id=patient.pk, limit=2, cursor=first["next_cursor"]).json()
    assert [item["event_id"] for item in second["items"]] == ["e-0"] and second["next_cursor"] is None
    by_type = api.get("/api/v1/events", type="refill.due").json()
    assert [item["patient_id"] for item in by_type["items"]] == [other.pk]
    assert "duplicate" not in by_type["items"][0]
    assert api.get("/api/v1/events", cursor="forged").status_code == 400
    # R-SEC-AUDIT: each patient a page showed is named in an audit event of the key, with the event ids only.
    viewed = AuditEvent.objects.filter(action=actions.PATIENT_VIEWED, patient_id=other.pk).get()
    assert viewed.actor_role == f"api_key:{api.key.pk}"
    assert viewed.details == {"event_ids": [by_type["items"][0]["id"]], "via": "api"}
    assert AuditEvent.objects.filter(action=actions.PATIENT_VIEWED, patient_id=patient.pk).count() == 2


def test_event_types_lists_the_vocabulary_for_senders(api_client):
    response = api_client([EVENTS_WRITE]).get("/api/v1/events/types")
    assert response.status_code == 200
    items = {item["type"]: item for item in response.json()["items"]}
    assert set(items) == set(EVENT_TYPES)
    medication = {attribute["name"]: attribute for attribute in items["medication.started"]["attributes"]}
    assert medication["medication_code"]["pattern"] == r"^[0-9]{1,10}$"
    assert medication["medication_code"]["required"] is True
    assert medication["days_supply"]["kind"] == "integer"


def test_batch_records_each_event_on_its_own(api_client, patient):
    api = _writer(api_client)
    seen = _body(patient, event_id="seen")
    api.post("/api/v1/events", seen)
    events = [
        _body(patient, event_id="new-1"),
        seen,
        _body(patient, event_id="bad", type="appointment.teleported"),
        _body(patient, event_id="clash", attributes={}),
        _body(patient, event_id="clash", attributes={"location_code": "SOUTH"}),
    ]
    response = api.post("/api/v1/events/batch", {"events": events})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["duplicates"], body["rejected"]) == (2, 1, 2)
    assert [(r["index"], r["event_id"], r["status"]) for r in body["results"]] == [
        (0, "new-1", "created"), (1, "seen", "duplicate"), (2, "bad", "rejected"), (3, "clash", "created"),
        (4, "clash", "rejected"),
    ]
    assert body["results"][2]["error"]["code"] == "unknown_event_type" and body["results"][2]["event"] is None
    assert body["results"][4]["error"]["code"] == "event_id_conflict"
    assert body["results"][0]["event"]["id"] == PatientEvent.objects.get(source_event_id="new-1").pk
    assert PatientEvent.objects.count() == 3


def test_batch_of_more_than_500_is_refused_whole(api_client, patient):
    events = [_body(patient, event_id=f"e-{n}") for n in range(501)]
    response = _writer(api_client).post("/api/v1/events/batch", {"events": events})
    assert response.status_code == 422
    assert not PatientEvent.objects.exists()


def test_r_no_phi_leak_event_answers_carry_no_identifiers(api_client, patient):
    api = _writer(api_client)
    answers = [
        api.post("/api/v1/events", _body(patient)),
        api.get("/api/v1/events", patient_id=patient.pk),
        api.post("/api/v1/events/batch", {"events": [_body(patient)]}),
    ]
    for answer in answers:
        text = json.dumps(answer.json()).lower()
        assert "jane" not in text and "example.org" not in text


def test_a_new_event_wakes_the_journeys_after_commit_and_a_duplicate_does_not(
    api_client, patient, django_capture_on_commit_callbacks
):
    """Issue 14: the journeys' intake routes a new event as soon as it has committed (beat is the fallback)."""
    api = _writer(api_client)
    body = _body(patient)
    with mock.patch("journeys.tasks.journey_advance_task.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True) as first:
            created = api.post("/api/v1/events", body)
        assert created.status_code == 201 and delay.call_count == 1
        with django_capture_on_commit_callbacks(execute=True) as again:
            duplicate = api.post("/api/v1/events", body)
        with django_capture_on_commit_callbacks(execute=True) as refused:
            api.post("/api/v1/events", _body(patient, event_id="other-1", type="equipment.exploded"))

    assert duplicate.status_code == 200 and delay.call_count == 1
    assert delay in first  # enqueued by on_commit, never from inside the transaction
    assert delay not in again and delay not in refused


def test_a_batch_wakes_the_journeys_once_when_it_recorded_something(
    api_client, patient, django_capture_on_commit_callbacks
):
    api = _writer(api_client)
    events = [_body(patient, event_id=f"batch-wake-{n}") for n in range(3)]
    with mock.patch("journeys.tasks.journey_advance_task.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            recorded = api.post("/api/v1/events/batch", {"events": events})
        with django_capture_on_commit_callbacks(execute=True):
            replayed = api.post("/api/v1/events/batch", {"events": events})

    assert (recorded.json()["created"], replayed.json()["duplicates"]) == (3, 3)
    assert delay.call_count == 1
