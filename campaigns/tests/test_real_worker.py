"""A launched campaign sent by a real Celery worker over Redis to a real SMTP server (R-SEND-COVERED,
R-SEND-EVIDENCE, R-RFC8058), and a patient's sign-in code sent by its own worker while a campaign is sending.

Nothing is mocked between the launch and the mail server: the launch's on_commit hook publishes the wake-up
to the broker, a separate worker process (test settings, pointed at this test's database) claims the
deliveries and sends through Django's SMTP backend, and the SMTP sink records what actually arrived.
"""
import re
import tempfile
import time
from datetime import timedelta

import pytest

from campaigns.models import Campaign, Delivery
from campaigns.selectors.campaigns import delivery_sent_without_coverage_count
from campaigns.sending.messages import unsubscribe_token_read
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.smtp_server import smtp_sink
from campaigns.tests.worker import SEND_TIMEOUT, purge_broker, wait_until_sent, worker_start, worker_stop
from conftest import requires_postgresql, requires_redis
from consent.services import portal
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = [
    pytest.mark.worker,
    requires_postgresql,
    requires_redis,
    pytest.mark.django_db(transaction=True),
]

_UNSUBSCRIBE = re.compile(r"^<(https?://[^>]+/unsubscribe/([^/>]+)/)>$")


def test_r_send_covered_a_real_worker_sends_only_to_covered_patients_with_rfc8058_headers():
    """R-SEND-COVERED, R-SEND-EVIDENCE, R-RFC8058: launched normally, the campaign reaches the worker through
    the broker; exactly the five covered patients receive a message, each with the delivery's Message-ID and
    one-click unsubscribe headers; the seven others are blocked with their reason; the campaign ends sent."""
    # Given 12 patients: five covered, the others not covered for four different reasons.
    purpose, other_purpose = purpose_make(), purpose_make()
    covered = [patient_make() for _ in range(5)]
    for patient in covered:
        authorization_make(patient=patient, purpose=purpose)
    expected_block = {}
    for _ in range(2):
        expected_block[patient_make().pk] = "no_authorization"
    for _ in range(2):
        patient = patient_make()
        authorization_make(patient=patient, purpose=other_purpose)
        expected_block[patient.pk] = "wrong_purpose"
    for _ in range(2):
        patient = patient_make()
        authorization_make(
            patient=patient, purpose=purpose, signed_ago=timedelta(days=400), expires_in=-timedelta(days=1)
        )
        expected_block[patient.pk] = "expired"
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")
    expected_block[patient.pk] = "revoked"
    campaign = campaign_approved_make(purpose=purpose)

    with smtp_sink() as sink, tempfile.TemporaryFile(mode="w+") as log:
        purge_broker()
        worker = worker_start(sink, log)
        status = None
        try:
            # When the campaign is launched (its on_commit hook publishes the wake-up to Redis)
            campaign_launch(actor=None, campaign_id=campaign.pk)
            status = wait_until_sent(campaign.pk, worker)
        finally:
            worker_stop(worker)
            log.seek(0)
            # pytest shows a test's output only when it fails, so this is the worker's log on failure.
            print(f"worker output (exit code {worker.returncode}):\n{log.read()}")
        records = sink.records
    assert status == Campaign.Status.SENT, f"campaign still {status!r} after {SEND_TIMEOUT}s; see the worker output"

    # Then exactly the covered patients received mail, once each.
    assert sorted(address for record in records for address in record.recipients) == sorted(
        patient.email for patient in covered
    )
    deliveries = {d.patient_id: d for d in Delivery.objects.filter(campaign=campaign)}
    assert len(deliveries) == 12
    by_address = {record.recipients[0]: record for record in records}
    for patient in covered:
        delivery, record = deliveries[patient.pk], by_address[patient.email]
        assert delivery.status == "sent"
        assert delivery.authorization.patient_id == patient.pk
        assert delivery.authorization.purpose_id == purpose.pk
        # R-SEND-EVIDENCE: the Message-ID the server saw is the one the delivery recorded.
        assert record.message_id == delivery.message_id != ""
        # R-RFC8058: an unsubscribe URL whose token names this very delivery, and the one-click POST header.
        match = _UNSUBSCRIBE.match(record.list_unsubscribe)
        assert match, record.list_unsubscribe
        assert unsubscribe_token_read(match.group(2)) == delivery.pk
        assert record.list_unsubscribe_post == "List-Unsubscribe=One-Click"
    # And every other patient has a blocked delivery with its reason, no authorization and no message.
    assert {
        pid: (d.status, d.block_reason) for pid, d in deliveries.items() if pid not in {p.pk for p in covered}
    } == {pid: ("blocked", reason) for pid, reason in expected_block.items()}
    assert all(deliveries[pid].authorization_id is None and deliveries[pid].sent_at is None for pid in expected_block)
    assert delivery_sent_without_coverage_count(campaign_id=campaign.pk) == 0
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENT and campaign.finished_at is not None


def test_a_sign_in_code_is_not_delayed_by_a_campaign_being_sent(settings):
    """DESIGN.md "Rate limits and priorities": with a worker on each queue, as scripts/run-demo and the README
    run them, a patient's sign-in code reaches the mail server while a big campaign is still being sent, rather
    than after its last message."""
    settings.HIPAAMAIL_TRANSACTIONAL_MAIL_EAGER = False  # published to the broker, as in production
    purpose = purpose_make()
    for _ in range(40):
        authorization_make(patient=patient_make(), purpose=purpose)
    waiting = patient_make(email="waiting.for.a.code@example.org")
    campaign = campaign_approved_make(purpose=purpose)

    # A mail server that takes 50 ms per message: the campaign needs two seconds or more.
    with smtp_sink(delay=0.05) as sink, tempfile.TemporaryFile(mode="w+") as log:
        purge_broker()
        workers = [
            worker_start(sink, log, queues="campaigns", name="campaigns"),
            worker_start(sink, log, queues="transactional", name="transactional"),
        ]
        status = None
        try:
            campaign_launch(actor=None, campaign_id=campaign.pk)
            deadline = time.monotonic() + SEND_TIMEOUT
            while not sink.records and time.monotonic() < deadline:  # the campaign has started to go out
                time.sleep(0.05)
            # When the patient asks for a code in the middle of the campaign
            assert portal.patient_code_issue(store={}, patient=waiting) is True
            status = wait_until_sent(campaign.pk, workers[0])
        finally:
            for worker in workers:
                worker_stop(worker)
            log.seek(0)
            print(f"worker output:\n{log.read()}")
        records = sink.records
    assert status == Campaign.Status.SENT, f"campaign still {status!r} after {SEND_TIMEOUT}s; see the worker output"

    # Then the code arrived before the campaign's last message, with campaign messages on either side of it.
    campaign_times = sorted(r.received_at for r in records if r.recipients != ("waiting.for.a.code@example.org",))
    (code,) = [r for r in records if r.recipients == ("waiting.for.a.code@example.org",)]
    assert len(campaign_times) == 40
    assert "Your code is: " in code.raw.decode()
    assert campaign_times[0] < code.received_at < campaign_times[-1]
