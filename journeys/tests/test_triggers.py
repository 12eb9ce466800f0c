"""Journeys triggered by a date on the patient's record, by entering a segment, and by an authorization nearing its
expiry (issue 14 item 1): each patient enrolled once per trigger, however often the scan runs (item 4)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import staff_make
from campaigns.services.segments import segment_save
from consent.tests.factories import authorization_make, patient_make
from journeys.engine.triggers import date_triggers_scan, expiry_triggers_scan, segment_triggers_scan, triggers_scan
from journeys.models import Enrolment, Trigger
from journeys.services.journeys import journey_pause
from journeys.tests.factories import journey_live_make, journey_purpose_make
from journeys.validation import TriggerSpec

pytestmark = pytest.mark.django_db


def test_a_date_trigger_enrols_on_the_day_field_plus_offset_falls_on_once_per_date():
    purpose = journey_purpose_make(kind="treatment")
    journey = journey_live_make(
        purpose=purpose, trigger=TriggerSpec(kind=Trigger.DATE, date_field="refill_due", offset_days=-7)
    )
    today = timezone.localdate()
    due_in_a_week = patient_make(refill_due=today + timedelta(days=7))
    missed_yesterday = patient_make(refill_due=today + timedelta(days=6))  # a scan missed: still within grace
    not_yet = patient_make(refill_due=today + timedelta(days=8))
    long_past = patient_make(refill_due=today + timedelta(days=2))

    first = date_triggers_scan()
    again = date_triggers_scan()

    enrolled = set(Enrolment.objects.filter(journey=journey).values_list("patient_id", flat=True))
    assert enrolled == {due_in_a_week.pk, missed_yesterday.pk}
    assert len(first) == 2 and again == []
    assert not_yet.pk not in enrolled and long_past.pk not in enrolled
    key = Enrolment.objects.get(patient=due_in_a_week).trigger_key
    assert key == f"date:refill_due:{due_in_a_week.pk}:{(today + timedelta(days=7)).isoformat()}"


def test_a_segment_trigger_enrols_members_once_and_later_joiners_when_they_join():
    purpose = journey_purpose_make()
    segment = segment_save(
        actor=staff_make(role="marketer"),
        name="Springfield",
        rules={"op": "and", "rules": [{"field": "postal_code", "prefix": "627"}]},
    )
    journey = journey_live_make(purpose=purpose, trigger=TriggerSpec(kind=Trigger.SEGMENT, segment=segment))
    member = patient_make(postal_code="62701")
    patient_make(postal_code="10001")

    segment_triggers_scan()
    joiner = patient_make(postal_code="62704")
    segment_triggers_scan()
    segment_triggers_scan()

    enrolled = sorted(Enrolment.objects.filter(journey=journey).values_list("patient_id", flat=True))
    assert enrolled == sorted([member.pk, joiner.pk])


def test_an_expiry_trigger_enrols_each_authorization_nearing_its_end_once():
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose, trigger=TriggerSpec(kind=Trigger.EXPIRY, days_before_expiry=30))
    soon, later, expired = patient_make(), patient_make(), patient_make()
    authorization = authorization_make(patient=soon, purpose=purpose, expires_in=timedelta(days=20))
    authorization_make(patient=later, purpose=purpose, expires_in=timedelta(days=90))
    authorization_make(patient=expired, purpose=purpose, expires_in=-timedelta(days=1), signed_ago=timedelta(days=400))

    assert len(expiry_triggers_scan()) == 1
    assert triggers_scan() == []

    enrolment = Enrolment.objects.get(journey=journey)
    assert (enrolment.patient_id, enrolment.trigger_key) == (soon.pk, f"expiry:{authorization.pk}")


def test_a_paused_journey_enrols_nobody():
    purpose = journey_purpose_make(kind="treatment")
    journey = journey_live_make(
        purpose=purpose, trigger=TriggerSpec(kind=Trigger.DATE, date_field="refill_due", offset_days=0)
    )
    patient_make(refill_due=timezone.localdate())
    journey_pause(actor=staff_make(role="compliance officer"), journey_id=journey.pk)

    assert date_triggers_scan() == []
    assert not Enrolment.objects.exists()
