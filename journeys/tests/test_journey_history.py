"""Journeys under the history checker (issue 14 item 2, R-SEND-COVERED, R-REVOKE-ANYTIME, R-SEND-EVIDENCE): real
workers send a three-message journey to many patients while revocations land at random instants and a worker is
killed; what the SMTP server received, with its times, is checked against what the database committed by the
campaigns' history checker (campaigns.tests.history.history_check: no message after a revocation, none lost, a
duplicate only when in flight and flagged, every sent delivery's evidence within its window), plus the journey's
own rule: a revocation ends the enrolment, so no message of that patient's journey is queued after it (a step that
comes due for a patient who has revoked is recorded blocked).

A journey's step campaigns stay open while it runs, by design (ADR 0016), so the checker's "unfinished campaign"
rule does not apply to them; every other rule does. Each seed is one random timeline; several run.
"""
import os
import random
import signal
import tempfile
import threading
import time
from datetime import timedelta

import pytest
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from campaigns import periodic as campaign_beat
from campaigns.models import Delivery
from campaigns.tests.history import Recorder, history_check, history_collect, history_report
from campaigns.tests.smtp_server import smtp_sink
from campaigns.tests.worker import purge_broker, worker_start, worker_stop
from conftest import requires_postgresql, requires_redis
from consent.services.authorizations import authorization_revoke
from consent.services.events import patient_event_record
from consent.tests.factories import authorization_make, patient_make
from journeys.models import Enrolment, ExitReason, Journey, StepKind
from journeys.selectors.journeys import journey_step_campaign_ids
from journeys.services.journeys import StepSpec
from journeys.tasks import journey_advance_task
from journeys.tests.factories import journey_live_make, journey_purpose_make

pytestmark = [
    pytest.mark.history,
    requires_postgresql,
    requires_redis,
    pytest.mark.django_db(transaction=True),
]

PATIENTS = 40
WINDOW = 1.0
TIMEOUT = 120
ENV = {
    "JOURNEY_MINUTE_SECONDS": "1",
    "QUIET_HOURS": "",
    "HIPAAMAIL_TRANSPORT": "smtp",
    "SEND_RATE_LIMIT": "60",  # messages per second across both workers: the run lasts a few seconds
    "SEND_BATCH_SIZE": "10",
    "SEND_LEASE_SECONDS": "2",
    "SEND_CHECK_WINDOW": str(WINDOW),
}
STEPS = [
    StepSpec(kind=StepKind.SEND, subject="First", body_text="Hello {{ first_name }}."),
    StepSpec(kind=StepKind.WAIT, wait_minutes=1),
    StepSpec(kind=StepKind.SEND, subject="Second", body_text="Tips."),
    StepSpec(kind=StepKind.WAIT, wait_minutes=1),
    StepSpec(kind=StepKind.SEND, subject="Third", body_text="Last one."),
]
SEEDS = [int(os.environ.get("HISTORY_SEED") or 0) + n for n in range(3)]


def _finished(journey) -> bool:
    """The run is over: every patient enrolled, none still in the journey, no message of it waiting to be sent.

    Read in one statement, so in one snapshot. Read one by one, a scanner pass committing between the reads (the
    enrolments made, their first messages not queued yet) made a journey that had barely started look finished: a
    loaded machine starts its workers late, and a timeline whose revocations and kill all come early (seed 2) then
    asks while the first pass runs."""
    queued = Delivery.objects.filter(
        campaign__journey_step__version__journey=OuterRef("pk"), status=Delivery.Status.QUEUED
    )
    state = (
        Journey.objects.filter(pk=journey.pk)
        .annotate(
            enrolled=Count("enrolments"),
            running=Count("enrolments", filter=Q(enrolments__status=Enrolment.Status.ACTIVE)),
            queued=Exists(queued),
        )
        .values_list("enrolled", "running", "queued")
        .get()
    )
    return state == (PATIENTS, 0, False)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_journey_with_revocations_and_a_kill_keeps_every_rule_of_the_history(seed):
    rng = random.Random(seed)
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose, steps=STEPS)
    patients = [patient_make() for _ in range(PATIENTS)]
    for patient in patients:
        authorization_make(patient=patient, purpose=purpose)
    revoking = rng.sample(patients, 12)
    revoke_at = {patient.pk: rng.uniform(0.2, 4.0) for patient in revoking}
    kill_at = rng.uniform(0.5, 3.0)
    recorder = Recorder()
    occurred = timezone.now() - timedelta(minutes=1)

    with smtp_sink(delay=0.005) as sink, tempfile.TemporaryFile(mode="w+") as log:
        purge_broker()
        workers = [worker_start(sink, log, extra_env=ENV, name=f"h{n}") for n in range(2)]
        threads: list[threading.Thread] = []
        try:
            for n, patient in enumerate(patients):
                patient_event_record(
                    source="ehr", source_event_id=f"e-{n}", patient_id=patient.pk, type="equipment.delivered",
                    occurred_at=occurred, attributes={"equipment_type": "CPAP"},
                )  # fmt: skip
            start = time.monotonic()
            journey_advance_task.delay()
            pending = sorted(revoke_at.items(), key=lambda item: item[1])
            killed, next_wake = False, 0.0
            deadline = start + TIMEOUT
            while time.monotonic() < deadline:
                elapsed = time.monotonic() - start
                while pending and pending[0][1] <= elapsed:
                    patient_id, _ = pending.pop(0)
                    thread = threading.Thread(
                        target=recorder.revocation,
                        kwargs={
                            "channel": "portal",
                            "patient_id": patient_id,
                            "purpose_id": purpose.pk,
                            "call": lambda pid=patient_id: [
                                r.authorization_id
                                for r in authorization_revoke(
                                    actor=None, patient_id=pid, purpose_id=purpose.pk, channel="portal"
                                )
                            ],
                        },
                    )
                    thread.start()
                    threads.append(thread)
                if not killed and elapsed >= kill_at:
                    victim = rng.randrange(2)
                    os.kill(workers[victim].pid, signal.SIGKILL)
                    workers[victim].wait(10)
                    workers[victim] = worker_start(sink, log, extra_env=ENV, name=f"h{victim}b")
                    killed = True
                if time.monotonic() >= next_wake:  # beat, compressed
                    journey_advance_task.delay()
                    campaign_beat.campaign_rewake_task.delay()
                    next_wake = time.monotonic() + 1.0
                if not pending and killed and _finished(journey):
                    break
                time.sleep(0.05)
            for thread in threads:
                thread.join(30)
        finally:
            for worker in workers:
                worker_stop(worker)
            log.seek(0)
            output = log.read()
        records = sink.records

    history = history_collect(
        window=WINDOW,
        campaign_ids=journey_step_campaign_ids(journey_id=journey.pk),
        patient_ids=[p.pk for p in patients],
        records=records,
        recorder=recorder,
    )
    violations = [v for v in history_check(history) if v.rule != "unfinished"]
    assert not violations, history_report(history, violations) + f"\nworkers' output:\n{output[-20000:]}"
    # The journey's own rule: a revoked patient's enrolment ended revoked, and no message was queued for them after
    # the revocation committed.
    returned = {call.patient_id: call.after for call in recorder.revocations if not call.refused}
    for patient in revoking:
        enrolment = Enrolment.objects.get(journey=journey, patient=patient)
        revoked_at = patient.authorizations.get().revocation.revoked_at
        if enrolment.exit_reason == ExitReason.COMPLETED:
            # Finished the whole journey before the revocation took effect: the pass that completed it started
            # (ended_at is its start) before the revocation committed, which it had by the time the call returned.
            # Not before revoked_at: that is stamped inside the revocation's transaction, and a pass starting after
            # the stamp still sees the enrolment running until the commit (the revocation then finds it ended);
            # a loaded machine stretches that stamp-to-commit time.
            assert enrolment.ended_at.timestamp() < returned[patient.pk], (patient.pk, enrolment.ended_at)
            continue
        assert enrolment.exit_reason == ExitReason.REVOKED, (patient.pk, enrolment.exit_reason)
        later = Delivery.objects.filter(patient=patient, created_at__gt=revoked_at)
        # (enrolled after revoking: its first step is recorded blocked, and the enrolment ends)
        assert set(later.values_list("status", "block_reason")) <= {("blocked", "revoked")}
    untouched = Enrolment.objects.filter(journey=journey).exclude(patient__in=revoking)
    assert set(untouched.values_list("exit_reason", flat=True)) == {ExitReason.COMPLETED}
