"""An Idempotency-Key on every POST: a retried call never creates twice; the same key with another body is refused;
answers are kept a day, then forgotten by the hourly job."""
from datetime import timedelta

import pytest
from django.utils import timezone

from api.models import IdempotencyRecord
from api.periodic import idempotency_records_prune_task
from api.scopes import EVENTS_WRITE
from consent.models import PatientEvent
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db


def _event(patient, event_id="E-1"):
    return {"event_id": event_id, "type": "equipment.delivered", "patient_id": patient.pk,
            "occurred_at": "2026-12-01T15:30:00Z", "attributes": {"equipment_type": "CPAP"}}


def test_a_retried_post_with_the_same_key_creates_once_and_replays_the_first_answer(api_client):
    patient = patient_make()
    api = api_client([EVENTS_WRITE])
    first = api.post("/api/v1/events", _event(patient), idempotency_key="retry-me")
    again = api.post("/api/v1/events", _event(patient), idempotency_key="retry-me")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert again.json() == first.json()
    assert PatientEvent.objects.count() == 1
    # The kept answer is encrypted at rest (it may name a record number).
    assert '"event_id"' not in IdempotencyRecord.objects.get().body


def test_the_same_key_with_another_body_is_refused_and_creates_nothing(api_client):
    patient = patient_make()
    api = api_client([EVENTS_WRITE])
    api.post("/api/v1/events", _event(patient), idempotency_key="k1")
    refused = api.post("/api/v1/events", _event(patient, event_id="E-2"), idempotency_key="k1")
    assert refused.status_code == 422 and refused.json()["code"] == "idempotency_key_reused"
    assert PatientEvent.objects.count() == 1


def test_keys_are_per_api_key(api_client):
    patient = patient_make()
    api_client([EVENTS_WRITE]).post("/api/v1/events", _event(patient), idempotency_key="same")
    other = api_client([EVENTS_WRITE]).post("/api/v1/events", _event(patient, "E-9"), idempotency_key="same")
    assert other.status_code == 201 and "Idempotent-Replayed" not in other


def test_a_refusal_for_a_missing_scope_is_not_kept(api_client):
    patient = patient_make()
    api = api_client([EVENTS_WRITE])
    api.key.scopes = []
    api.key.save(update_fields=["scopes"])
    assert api.post("/api/v1/events", _event(patient), idempotency_key="k").status_code == 403
    api.key.scopes = [EVENTS_WRITE]
    api.key.save(update_fields=["scopes"])
    assert api.post("/api/v1/events", _event(patient), idempotency_key="k").status_code == 201


def test_a_first_call_still_running_answers_409_and_a_stale_one_is_taken_over(api_client):
    patient = patient_make()
    api = api_client([EVENTS_WRITE])
    IdempotencyRecord.objects.create(api_key=api.key, key="busy", request_hash="x")
    busy = api.post("/api/v1/events", _event(patient), idempotency_key="busy")
    assert busy.status_code == 409 and busy["Retry-After"] == "1"
    IdempotencyRecord.objects.filter(key="busy").update(created_at=timezone.now() - timedelta(minutes=5))
    assert api.post("/api/v1/events", _event(patient), idempotency_key="busy").status_code == 201


def test_answers_older_than_a_day_are_pruned(api_client):
    patient = patient_make()
    api = api_client([EVENTS_WRITE])
    api.post("/api/v1/events", _event(patient), idempotency_key="old")
    api.post("/api/v1/events", _event(patient, "E-3"), idempotency_key="new")
    IdempotencyRecord.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_records_prune_task() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
