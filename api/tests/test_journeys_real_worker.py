"""Issue 14, "Done when": a journey on PostgreSQL with a real worker, a real beat and a real SMTP server. Events are
posted through the integration API; the steps fire at their (accelerated) times; a revocation mid-journey stops the
further steps at once; the same event delivered twice enrols once. Checked on the recorded history: what the SMTP
server received, with times, against what the database committed (R-SEND-COVERED, R-REVOKE-ANYTIME,
R-SEND-EVIDENCE).

Nothing is mocked between the API and the mail server: the API stores the event, beat runs the journey scanner
every half second (JOURNEY_SCAN_SECONDS), the worker routes the event, enrols, runs the due steps and sends through
the one sender to the SMTP sink. A journey "minute" lasts one second here (JOURNEY_MINUTE_SECONDS).
"""
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Delivery
from campaigns.tests.smtp_server import smtp_sink
from campaigns.tests.worker import BASE_DIR, database_url_of_this_test, purge_broker, worker_start, worker_stop
from conftest import requires_postgresql, requires_redis
from consent.models import Revocation
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make
from journeys.models import Enrolment, ExitReason, JourneyStep, StepKind
from journeys.services.journeys import StepSpec
from journeys.tests.factories import event_trigger, journey_live_make, journey_purpose_make

pytestmark = [
    pytest.mark.worker,
    requires_postgresql,
    requires_redis,
    pytest.mark.django_db(transaction=True),
]

TIMEOUT = 90
WAIT_MINUTES = 3  # three seconds between the steps here
ENV = {
    "JOURNEY_MINUTE_SECONDS": "1",
    "JOURNEY_SCAN_SECONDS": "0.5",
    "QUIET_HOURS": "",
    "HIPAAMAIL_TRANSPORT": "smtp",
    "SEND_RATE_LIMIT": "0",
}
STEPS = [
    StepSpec(kind=StepKind.SEND, subject="Welcome to your CPAP", body_text="Hello {{ first_name }}."),
    StepSpec(kind=StepKind.WAIT, wait_minutes=WAIT_MINUTES),
    StepSpec(kind=StepKind.SEND, subject="Your first week", body_text="A few tips."),
    StepSpec(kind=StepKind.WAIT, wait_minutes=WAIT_MINUTES),
    StepSpec(kind=StepKind.SEND, subject="How is it going?", body_text="Tell us."),
]


def _beat_start(log, var_dir: str) -> subprocess.Popen:
    env = {
        "DJANGO_SETTINGS_MODULE": "hipaamail.settings.test",
        "DATABASE_URL": database_url_of_this_test(),
        "HIPAAMAIL_VAR_DIR": var_dir,
        "PATH": "/usr/bin:/bin",
        **ENV,
    }
    from django.conf import settings

    env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    command = [sys.executable, "-m", "celery", "-A", "hipaamail", "beat", "-l", "info", "-s", f"{var_dir}/beat"]
    return subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)


def _post_event(api, patient, event_id: str, occurred_at):
    return api.post(
        "/api/v1/events",
        {
            "event_id": event_id,
            "type": "equipment.delivered",
            "patient_id": patient.pk,
            "occurred_at": occurred_at.isoformat(),
            "attributes": {"equipment_type": "CPAP"},
        },
    )


def _received(records, address):
    return [(r.received_at, r.raw) for r in records if r.recipients == (address,)]


def test_a_journey_runs_from_api_events_to_the_mail_server_with_a_revocation_and_a_duplicate(api_client):
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose, trigger=event_trigger(conditions={"equipment_type": "CPAP"}), steps=STEPS)
    subjects = [spec.subject for spec in STEPS if spec.kind == StepKind.SEND]
    steady = patient_make(email="steady@example.org")
    revoking = patient_make(email="revoking@example.org")
    uncovered = patient_make(email="uncovered@example.org")
    twice = patient_make(email="twice@example.org")
    for patient in (steady, revoking, twice):
        authorization_make(patient=patient, purpose=purpose)
    api = api_client()
    occurred = timezone.now() - timedelta(minutes=5)

    with smtp_sink() as sink, tempfile.TemporaryFile(mode="w+") as log, tempfile.TemporaryDirectory() as var:
        purge_broker()
        worker = worker_start(sink, log, extra_env=ENV)
        beat = _beat_start(log, var)
        revoked_at = None
        try:
            # When the EHR posts the deliveries (one of them twice, as a retrying sender does)
            for patient, event_id in ((steady, "d-1"), (revoking, "d-2"), (uncovered, "d-3"), (twice, "d-4")):
                assert _post_event(api, patient, event_id, occurred).status_code == 201
            assert _post_event(api, twice, "d-4", occurred).status_code == 200  # the same event: a duplicate
            # and, while the first enrolment runs, another delivery event for the same patient
            assert _post_event(api, twice, "d-5", occurred + timedelta(seconds=1)).status_code == 201

            deadline = time.monotonic() + TIMEOUT
            # The revoking patient revokes as soon as their first message has arrived.
            while not _received(sink.records, revoking.email) and time.monotonic() < deadline:
                time.sleep(0.05)
            authorization_revoke(actor=None, patient_id=revoking.pk, purpose_id=purpose.pk, channel="portal")
            revoked_at = Revocation.objects.get(authorization__patient=revoking).revoked_at.timestamp()
            # Until every enrolment has ended and nothing is queued.
            while time.monotonic() < deadline:
                running = Enrolment.objects.filter(journey=journey, status="active").exists()
                queued = Delivery.objects.filter(patient__in=[steady, twice], status="queued").exists()
                if not running and not queued and len(_received(sink.records, steady.email)) == 3:
                    break
                time.sleep(0.2)
        finally:
            for process in (beat, worker):
                worker_stop(process)
            log.seek(0)
            print(f"worker and beat output:\n{log.read()}")
        records = sink.records

    # Then the steady patient received the three steps in order, each after its wait (the recorded history).
    steady_mail = _received(records, steady.email)
    assert [next(s for s in subjects if s.encode() in raw) for _, raw in steady_mail] == subjects
    # Each step came due after its wait: its delivery was created (by the scanner, in the database's record) at
    # least WAIT_MINUTES after the step before's, and received after it was created. (Receipt times alone would
    # not show it: a first message the loaded sender was slow to hand over arrives closer to the second.)
    created = [
        d.created_at.timestamp()
        for d in Delivery.objects.filter(patient=steady, campaign__kind="journey_step").order_by("id")
    ]
    assert len(created) == 3
    assert created[1] - created[0] >= WAIT_MINUTES - 0.5 and created[2] - created[1] >= WAIT_MINUTES - 0.5
    assert all(at >= made - 0.5 for (at, _), made in zip(steady_mail, created))
    # The revoking patient got the first message only, received before the revocation committed, and their
    # enrolment ended with it (R-REVOKE-ANYTIME).
    revoking_mail = _received(records, revoking.email)
    assert len(revoking_mail) == 1 and revoking_mail[0][0] < revoked_at
    assert Enrolment.objects.get(journey=journey, patient=revoking).exit_reason == ExitReason.REVOKED
    # The uncovered patient got nothing; the step recorded why (R-SEND-EVIDENCE).
    assert _received(records, uncovered.email) == []
    blocked = Delivery.objects.get(patient=uncovered)
    assert (blocked.status, blocked.block_reason) == ("blocked", "no_authorization")
    # The event delivered twice enrolled once: three messages, one enrolment.
    assert len(_received(records, twice.email)) == 3
    assert Enrolment.objects.filter(journey=journey, patient=twice).count() == 1
    # Every message the server received is a sent delivery with its authorization, and the other way round.
    sent = Delivery.objects.filter(campaign__journey_step__version__journey=journey, status="sent")
    assert sent.count() == len(records) == 7
    assert all(d.authorization_id is not None and d.possible_duplicate is False for d in sent)
    assert {r.message_id for r in records} == set(sent.values_list("message_id", flat=True))
    assert JourneyStep.objects.filter(version=journey.live_version, kind=StepKind.SEND).count() == 3
