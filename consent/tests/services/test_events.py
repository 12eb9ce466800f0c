"""Care events (issue 13): the vocabulary, what patient_event_record accepts and refuses (stable codes, messages
that never repeat a value: R-NO-PHI-LEAK), idempotency per (source, event id), a conflicting replay, the race of two
senders on PostgreSQL, the audit event, and the list."""
import re
import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from audit import actions
from audit.models import AuditEvent
from conftest import requires_postgresql
from consent.events import ATTRIBUTES, CODE_PATTERN, EVENT_TYPES, MAX_ATTRIBUTES, TYPE_PATTERN, vocabulary
from consent.models import PatientEvent
from consent.selectors.events import patient_event_list
from consent.services.events import CLOCK_SKEW, patient_event_record
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db

DOCUMENTED = {
    "appointment.booked", "appointment.completed", "appointment.cancelled", "consultation.completed",
    "home_visit.completed", "procedure.performed", "equipment.delivered", "equipment.training_completed",
    "medication.started", "refill.due", "program.enrolled", "program.completed",
}


def _record(patient, **overrides):
    fields = {
        "source": "ehr-north",
        "source_event_id": "evt-1001",
        "patient_id": patient.pk,
        "type": "equipment.delivered",
        "occurred_at": timezone.now() - timedelta(hours=2),
        "attributes": {"equipment_type": "CPAP", "procedure_code": "E0601", "quantity": 1},
    }
    fields |= overrides
    return patient_event_record(**fields)


def _code(error: pytest.ExceptionInfo) -> str:
    value = error.value
    if hasattr(value, "error_dict"):
        return next(iter(value.error_dict.values()))[0].code
    return value.error_list[0].code


# --- the vocabulary ---------------------------------------------------------------------------------------


def test_vocabulary_holds_every_documented_type_with_label_description_and_known_attributes():
    assert DOCUMENTED <= set(EVENT_TYPES)
    for event_type in EVENT_TYPES.values():
        assert re.fullmatch(TYPE_PATTERN, event_type.code) and len(event_type.code) <= 40
        assert event_type.label and event_type.description and "\n" not in event_type.description
        assert set(event_type.attributes) <= set(ATTRIBUTES)
        assert set(event_type.required) <= set(event_type.attributes)
        assert len(event_type.attributes) <= MAX_ATTRIBUTES


def test_every_attribute_is_a_code_shape_never_free_text():
    """R-NO-PHI-LEAK: every pattern only admits the code shape (letters, digits, .-_, at most 40), so a sentence
    cannot pass any attribute."""
    sentence = "Patient Jane Doe said her mask leaks"
    for attribute in ATTRIBUTES.values():
        assert not attribute.accepts(sentence), attribute.name
        assert not attribute.accepts("x" * 41), attribute.name
        if attribute.kind in ("code", "date"):
            assert attribute.pattern.startswith("^") and attribute.pattern.endswith("$")
            assert not re.fullmatch(attribute.pattern, "a b")


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("procedure_code", ["95810", "E0601", "0001F"], ["9581", "e0601", "E06011", 95810]),
        ("medication_code", ["197361", "1"], ["RX197361", "12345678901", 197361]),
        ("specialty_code", ["207RP1001X"], ["207RP1001", "207rp1001x"]),
        ("days_supply", [1, 30, 999], [0, 1000, "30", True, 30.5]),
        ("quantity", [1, 9999], [0, 10000, "2"]),
        ("appointment_date", ["2026-12-01"], ["2026-13-01", "2026-02-30", "01/12/2026"]),
        ("cancel_reason", ["no_show", "patient_request"], ["sick", "No show"]),
        ("equipment_type", ["CPAP", "WHEELCHAIR-MANUAL", "o2.conc_5l"], ["-CPAP", "", "CPAP MASK"]),
    ],
)
def test_attribute_patterns_accept_codes_and_refuse_the_rest(name, good, bad):
    attribute = ATTRIBUTES[name]
    assert all(attribute.accepts(value) for value in good)
    assert not any(attribute.accepts(value) for value in bad)


def test_vocabulary_lists_each_type_with_its_attributes_for_senders():
    listed = {item["type"]: item for item in vocabulary()}
    assert set(listed) == set(EVENT_TYPES)
    delivered = {attribute["name"]: attribute for attribute in listed["equipment.delivered"]["attributes"]}
    assert delivered["equipment_type"] == {
        "name": "equipment_type", "label": "Equipment type", "kind": "code", "pattern": CODE_PATTERN,
        "required": True, "description": ATTRIBUTES["equipment_type"].description,
    }
    assert delivered["quantity"]["minimum"] == 1 and delivered["quantity"]["maximum"] == 9999
    assert delivered["quantity"]["required"] is False


# --- recording --------------------------------------------------------------------------------------------


def test_an_event_is_recorded_and_audited_in_the_same_transaction_with_codes_only():
    patient = patient_make(email="jane@example.org", full_name="Jane Doe")
    event, created = _record(patient)
    assert created is True
    stored = PatientEvent.objects.get(pk=event.pk)
    assert (stored.patient_id, stored.type, stored.source, stored.source_event_id) == (
        patient.pk, "equipment.delivered", "ehr-north", "evt-1001"
    )
    assert stored.attributes == {"equipment_type": "CPAP", "procedure_code": "E0601", "quantity": 1}
    assert stored.received_at is not None
    audit = AuditEvent.objects.get(action=actions.PATIENT_EVENT_RECORDED)
    assert audit.patient_id == patient.pk
    assert audit.object_type == "patient_event" and audit.object_id == str(event.pk)
    assert audit.details == {"type": "equipment.delivered", "event_id": event.pk, "source": "ehr-north"}
    assert "jane" not in str(audit.details).lower()


def test_the_same_event_again_returns_the_stored_one_and_stores_nothing():
    patient = patient_make()
    occurred_at = timezone.now() - timedelta(days=1)
    first, created = _record(patient, occurred_at=occurred_at)
    # The same instant written in another time zone is the same event.
    again, created_again = _record(patient, occurred_at=timezone.localtime(occurred_at, timezone.get_fixed_timezone(120)))
    assert created is True and created_again is False
    assert again.pk == first.pk
    assert PatientEvent.objects.count() == 1
    assert AuditEvent.objects.filter(action=actions.PATIENT_EVENT_RECORDED).count() == 1


def test_the_same_event_id_from_another_source_is_another_event():
    patient = patient_make()
    first, _ = _record(patient, source="ehr-north")
    second, created = _record(patient, source="crm")
    assert created is True and second.pk != first.pk


@pytest.mark.parametrize(
    "change",
    [
        {"type": "equipment.training_completed", "attributes": {"equipment_type": "CPAP"}},
        {"attributes": {"equipment_type": "CPAP", "quantity": 2}},
        {"occurred_at": timezone.now() - timedelta(days=3)},
        {"patient_id": None},
    ],
    ids=["type", "attributes", "occurred_at", "patient"],
)
def test_the_same_event_id_with_another_body_is_refused_and_stores_nothing(change):
    patient, other = patient_make(), patient_make()
    _record(patient)
    if change.get("patient_id", 0) is None:
        change = {"patient_id": other.pk}
    with pytest.raises(ValidationError) as refused:
        _record(patient, **change)
    assert _code(refused) == "event_id_conflict"
    assert PatientEvent.objects.count() == 1
    assert AuditEvent.objects.filter(action=actions.PATIENT_EVENT_RECORDED).count() == 1


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"type": "appointment.teleported"}, "unknown_event_type"),
        ({"attributes": {"equipment_type": "CPAP", "colour": "blue"}}, "unknown_attribute"),
        ({"attributes": {"equipment_type": "CPAP", "medication_code": "197361"}}, "unknown_attribute"),
        ({"attributes": {"equipment_type": "Jane Doe's CPAP"}}, "bad_attribute_value"),
        ({"attributes": {"equipment_type": "CPAP", "quantity": "1"}}, "bad_attribute_value"),
        ({"attributes": {"procedure_code": "E0601"}}, "missing_attribute"),
        ({"occurred_at": timezone.now() + timedelta(hours=1)}, "occurred_in_future"),
        ({"occurred_at": timezone.now().replace(tzinfo=None)}, "bad_occurred_at"),
        ({"patient_id": 2**40}, "unknown_patient"),
        ({"patient_id": True}, "unknown_patient"),
        ({"source_event_id": "has spaces in it"}, "bad_event_id"),
        ({"source_event_id": ""}, "bad_event_id"),
    ],
)
def test_invalid_events_are_refused_with_a_stable_code_and_nothing_is_stored(overrides, code):
    patient = patient_make()
    with pytest.raises(ValidationError) as refused:
        _record(patient, **overrides)
    assert _code(refused) == code
    assert "Jane" not in str(refused.value)  # R-NO-PHI-LEAK: the message never repeats the value
    assert PatientEvent.objects.count() == 0
    assert not AuditEvent.objects.filter(action=actions.PATIENT_EVENT_RECORDED).exists()


def test_a_small_clock_skew_is_allowed():
    patient = patient_make()
    _, created = _record(patient, occurred_at=timezone.now() + CLOCK_SKEW - timedelta(seconds=30))
    assert created is True


def test_events_list_newest_first_filtered_by_patient_and_type():
    jane, john = patient_make(), patient_make()
    now = timezone.now()
    old, _ = _record(jane, source_event_id="a", occurred_at=now - timedelta(days=5))
    new, _ = _record(
        jane, source_event_id="b", type="program.enrolled", attributes={"program_code": "DPP"},
        occurred_at=now - timedelta(days=1),
    )
    other, _ = _record(john, source_event_id="c")
    assert list(patient_event_list(patient_id=jane.pk)) == [new, old]
    assert list(patient_event_list(type="equipment.delivered")) == [other, old]
    assert list(patient_event_list(patient_id=jane.pk, type="program.enrolled")) == [new]


@requires_postgresql
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_two_senders_racing_with_the_same_event_store_it_once():
    """Race-safe on PostgreSQL: both requests read "not stored yet" (a barrier holds each after its read, before its
    insert), one insert wins the unique constraint, the other gets the IntegrityError, reads the winner's row and
    answers it (created False). One row, one audit event."""
    patient = patient_make()
    occurred_at = timezone.now() - timedelta(hours=1)
    barrier = threading.Barrier(2)
    results, errors = [], []
    full_clean = PatientEvent.full_clean

    def clean_then_wait(self, *args, **kwargs):
        full_clean(self, *args, **kwargs)
        barrier.wait(timeout=10)

    def run():
        try:
            results.append(_record(patient, occurred_at=occurred_at))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    with mock.patch.object(PatientEvent, "full_clean", clean_then_wait):
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    assert sorted(created for _, created in results) == [False, True]
    assert len({event.pk for event, _ in results}) == 1
    assert PatientEvent.objects.count() == 1
    assert AuditEvent.objects.filter(action=actions.PATIENT_EVENT_RECORDED).count() == 1
