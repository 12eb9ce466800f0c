"""A journey step's blocked delivery in the metrics (ADR 0018): counted once its pass commits, stage "journey"."""
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from consent.services.events import patient_event_record
from consent.tests.factories import patient_make
from journeys.engine.intake import events_route
from journeys.engine.steps import journey_steps_advance
from journeys.tests.factories import journey_live_make, journey_purpose_make

pytestmark = pytest.mark.django_db


def _blocked(reason: str) -> float:
    return REGISTRY.get_sample_value("hipaamail_deliveries_blocked_total", {"reason": reason, "stage": "journey"}) or 0


def test_a_step_blocked_for_an_uncovered_patient_is_counted_after_the_pass_commits(settings,
                                                                                    django_capture_on_commit_callbacks):
    settings.HIPAAMAIL_JOURNEY_MINUTE_SECONDS = 0.001
    settings.HIPAAMAIL_QUIET_HOURS = ""
    journey_live_make(purpose=journey_purpose_make())
    patient = patient_make()  # no authorization
    patient_event_record(source="ehr", source_event_id="m1", patient_id=patient.pk, type="equipment.delivered",
                         occurred_at=timezone.now() - timedelta(minutes=1), attributes={"equipment_type": "CPAP"})
    events_route()
    before = _blocked("no_authorization")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        journey_steps_advance()
    assert _blocked("no_authorization") == before  # not before the commit
    for callback in callbacks:
        callback()

    assert _blocked("no_authorization") == before + 1
