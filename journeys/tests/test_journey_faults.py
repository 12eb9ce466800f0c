"""Issue 14, "Done when": a killed worker loses no journey step and sends no step twice except one in flight, and
then the delivery says so. Real worker processes on PostgreSQL and Redis, killed with SIGKILL at different points
of a running journey; checked on the recorded history (what the SMTP server received) against what the database
committed (R-SEND-COVERED, R-SEND-EVIDENCE; DESIGN.md "no queued delivery is ever lost").

The scanner's pass is one transaction that touches no mail server, so a kill inside it rolls back and the
enrolments are due again; a kill while the sender holds a batch leaves leased deliveries that the reconciler
re-claims after the lease, sending again under the same Message-ID and marking them `possible_duplicate`.
"""
import os
import signal
import tempfile
import time
from collections import Counter
from datetime import timedelta

import pytest
from celery import current_app as celery_app
from django.utils import timezone

from campaigns import periodic as campaign_beat
from campaigns.models import Delivery
from campaigns.tests.smtp_server import smtp_sink
from campaigns.tests.worker import QUEUES, purge_broker, worker_start, worker_stop
from conftest import requires_postgresql, requires_redis
from consent.services.events import patient_event_record
from consent.tests.factories import authorization_make, patient_make
from journeys.models import Enrolment, StepKind
from journeys.services.journeys import StepSpec
from journeys.tasks import journey_advance_task
from journeys.tests.factories import journey_live_make, journey_purpose_make

pytestmark = [
    pytest.mark.faults,
    requires_postgresql,
    requires_redis,
    pytest.mark.django_db(transaction=True),
]

PATIENTS = 30
TIMEOUT = 120
ENV = {
    "JOURNEY_MINUTE_SECONDS": "1",
    "QUIET_HOURS": "",
    "HIPAAMAIL_TRANSPORT": "smtp",
    "SEND_RATE_LIMIT": "0",
    "SEND_BATCH_SIZE": "10",
    "SEND_LEASE_SECONDS": "2",
    "SEND_CHECK_WINDOW": "5",
    "SEND_LOCK_SECONDS": "5",
}
STEPS = [
    StepSpec(kind=StepKind.SEND, subject="Step one: welcome", body_text="Hello {{ first_name }}."),
    StepSpec(kind=StepKind.WAIT, wait_minutes=1),
    StepSpec(kind=StepKind.SEND, subject="Step two: tips", body_text="A few tips."),
]


def _broker_forget() -> None:
    """What a Redis restarted without persistence holds: no queued wake-up, no unacknowledged task."""
    with celery_app.connection_for_write() as broker:
        channel = broker.default_channel
        for queue in QUEUES:
            channel.queue_purge(queue)
        channel.client.delete(channel.unacked_key, channel.unacked_index_key, channel.unacked_mutex_key)


@pytest.mark.parametrize(
    ("kill_after", "lose_broker"),
    [(1, False), (9, False), (23, False), (41, False), (12, True)],
    ids=["kill-at-1", "kill-at-9", "kill-at-23", "kill-at-41", "kill-and-lose-the-broker-at-12"],
)
def test_a_worker_killed_mid_journey_loses_no_step_and_flags_any_duplicate(kill_after, lose_broker):
    """With `lose_broker`, the broker's queues are emptied at the kill too: the scanner's beat and the reconciler
    find the work again in the database."""
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose, steps=STEPS)
    patients = [patient_make() for _ in range(PATIENTS)]
    for patient in patients:
        authorization_make(patient=patient, purpose=purpose)
    occurred = timezone.now() - timedelta(minutes=1)

    # A mail server that takes 30 ms a message: the kill lands while messages are being handed over.
    with smtp_sink(delay=0.03) as sink, tempfile.TemporaryFile(mode="w+") as log:
        purge_broker()
        workers = [worker_start(sink, log, extra_env=ENV, name="faults1")]
        killed = False
        try:
            for n, patient in enumerate(patients):
                patient_event_record(
                    source="ehr", source_event_id=f"e-{n}", patient_id=patient.pk, type="equipment.delivered",
                    occurred_at=occurred, attributes={"equipment_type": "CPAP"},
                )  # fmt: skip
            journey_advance_task.delay()
            deadline = time.monotonic() + TIMEOUT
            next_wake = 0.0
            while time.monotonic() < deadline:
                if not killed and len(sink.records) >= kill_after:
                    os.kill(workers[-1].pid, signal.SIGKILL)
                    workers[-1].wait(10)
                    if lose_broker:
                        _broker_forget()
                    killed = True
                    workers.append(worker_start(sink, log, extra_env=ENV, name="faults2"))
                if time.monotonic() >= next_wake:  # beat, compressed: the scanner and the reconciler
                    journey_advance_task.delay()
                    campaign_beat.campaign_rewake_task.delay()
                    next_wake = time.monotonic() + 1.0
                running = Enrolment.objects.filter(journey=journey, status="active").exists()
                queued = Delivery.objects.filter(campaign__journey_step__version__journey=journey, status="queued")
                if killed and not running and not queued.exists():
                    break
                time.sleep(0.1)
        finally:
            for worker in workers:
                worker_stop(worker)
            log.seek(0)
            print(f"workers' output:\n{log.read()}")
        records = sink.records

    assert killed, "the worker was never killed: the journey finished before the kill point"
    # No step lost: every enrolment completed and every message of both steps reached its end, sent.
    enrolments = Enrolment.objects.filter(journey=journey)
    assert enrolments.count() == PATIENTS
    assert set(enrolments.values_list("status", "exit_reason")) == {("ended", "completed")}
    deliveries = list(Delivery.objects.filter(campaign__journey_step__version__journey=journey))
    assert len(deliveries) == 2 * PATIENTS
    assert {d.status for d in deliveries} == {"sent"}
    # What the server received: each message at least once, under its delivery's Message-ID.
    received = Counter(record.message_id for record in records)
    by_id = {d.message_id: d for d in deliveries}
    assert set(received) == set(by_id)
    # Twice only when the delivery was in flight at the kill, and then it is flagged.
    twice = {message_id for message_id, n in received.items() if n > 1}
    assert all(n <= 2 for n in received.values())
    assert all(by_id[message_id].possible_duplicate for message_id in twice)
    in_flight = [d for d in deliveries if d.possible_duplicate]
    assert len(in_flight) <= int(ENV["SEND_BATCH_SIZE"])  # at most the batch the killed worker held
