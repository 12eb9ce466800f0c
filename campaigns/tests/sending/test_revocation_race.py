"""A revocation racing a send, on PostgreSQL, through a real SMTP server (R-REVOKE-ANYTIME, R-SEND-COVERED).

The central invariant says the consent check happens under a lock at the moment of sending: the sender holds
the covering authorizations FOR SHARE from its re-check until its batch commits, and a revocation locks the
same rows FOR UPDATE. So a revocation either commits before a batch checks (that patient is blocked, reason
"revoked") or waits until the in-flight batch has committed (its message, if any, was already with the mail
server before the revocation returned). What must never happen is a message reaching the mail server after
the revocation of its patient has committed.

One thread runs the one sender in small batches against an SMTP sink that answers slowly; another revokes
patients one by one while it runs, half of them picked just ahead of the sender's position so that many
revocations hit the batch in flight. Every instant compared across threads is taken from the same clock
(time.time() in this process, or the database's clock for sent_at and revoked_at).
"""
import random
import threading
import time
from collections import Counter
from unittest import mock

import pytest
from django.db import connection

from campaigns.models import Delivery
from campaigns.selectors.campaigns import delivery_sent_without_coverage_count
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.smtp_server import smtp_sink
from conftest import requires_postgresql
from consent.models import Revocation
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = [requires_postgresql, pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

PATIENTS = 150
REVOKED = 60
BATCH_SIZE = 10
SINK_DELAY = 0.003  # seconds the mail server takes to accept each message: a batch is in flight ~50 ms
THREAD_TIMEOUT = 60


def test_r_revoke_anytime_no_message_leaves_after_a_racing_revocation_commits(settings):
    """R-REVOKE-ANYTIME, R-SEND-COVERED: while a campaign is being sent, patients revoke one by one. No
    message for a patient reaches the mail server after their revocation has committed; a patient whose
    delivery was still queued ends blocked "revoked"; nobody gets two messages; every sent delivery is a
    message the server received, and the reverse."""
    # Given 150 patients, each covered for a marketing purpose, and the campaign launched (no Celery wake:
    # this test is the worker).
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    purpose = purpose_make()
    patients = [patient_make() for _ in range(PATIENTS)]
    for patient in patients:
        authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    assert Delivery.objects.filter(campaign=campaign, status=Delivery.Status.QUEUED).count() == PATIENTS

    patient_by_email = {patient.email: patient for patient in patients}
    position = {patient.pk: index for index, patient in enumerate(patients)}  # deliveries go out in this order
    to_revoke = rng.sample([patient.pk for patient in patients], REVOKED)

    with smtp_sink(delay=SINK_DELAY) as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = sink.host
        settings.EMAIL_PORT = sink.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False

        start = threading.Barrier(2, timeout=THREAD_TIMEOUT)
        errors: list[BaseException] = []
        batches: list[int] = []
        revocation_window: dict[int, tuple[float, float]] = {}  # patient id -> (just before, just after)

        def send_everything():
            try:
                start.wait()
                while decided := delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=BATCH_SIZE):
                    batches.append(decided)
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                errors.append(error)
            finally:
                connection.close()

        def next_target(remaining: list[int]) -> int:
            # Half the time, the next revokee just ahead of the last message the server took: most likely
            # in the batch the sender holds right now. Otherwise any of them, so early and late revocations
            # (plainly blocked, plainly already sent) are in the mix too.
            records = sink.records
            if records and rng.random() < 0.5:
                current = position[patient_by_email[records[-1].recipients[0]].pk]
                ahead = [pid for pid in remaining if position[pid] > current]
                if ahead:
                    return min(ahead, key=position.__getitem__)
            return rng.choice(remaining)

        def revoke_one_by_one():
            try:
                remaining = list(to_revoke)
                start.wait()
                while remaining:
                    time.sleep(rng.uniform(0.0, 0.008))
                    patient_id = next_target(remaining)
                    remaining.remove(patient_id)
                    before = time.time()
                    authorization_revoke(actor=None, patient_id=patient_id, purpose_id=purpose.pk, channel="portal")
                    revocation_window[patient_id] = (before, time.time())
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=send_everything), threading.Thread(target=revoke_one_by_one)]
        started = time.time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(THREAD_TIMEOUT)
        elapsed = time.time() - started
        records = sink.records

    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    assert errors == [], f"seed {seed}: {errors!r}"
    assert sorted(revocation_window) == sorted(to_revoke)

    deliveries = {d.patient_id: d for d in Delivery.objects.filter(campaign=campaign)}
    revoked_at = dict(
        Revocation.objects.filter(authorization__purpose=purpose).values_list("authorization__patient_id", "revoked_at")
    )
    received = {}  # patient id -> the one record
    received_count = Counter()
    for record in records:
        assert len(record.recipients) == 1
        patient = patient_by_email[record.recipients[0]]
        received_count[patient.pk] += 1
        received[patient.pk] = record
    first_received = min(record.received_at for record in records)
    last_received = max(record.received_at for record in records)

    # (a) No message reached the server after its patient's revocation had committed.
    overtaken = {
        patient_id: round(received[patient_id].received_at - after, 4)
        for patient_id, (before, after) in revocation_window.items()
        if patient_id in received and received[patient_id].received_at > after
    }
    assert overtaken == {}, f"seed {seed}: messages received after the revocation committed (s late): {overtaken}"

    # (b) Nobody got two messages.
    assert [pid for pid, count in received_count.items() if count > 1] == []

    # (c) A revoked patient's delivery was sent before the revocation (database clock) or is blocked "revoked";
    # everybody else was sent; nothing is left queued and nothing was sent uncovered.
    assert set(revoked_at) == set(to_revoke)
    wrong = {}
    for patient in patients:
        delivery = deliveries[patient.pk]
        if patient.pk in revoked_at:
            blocked_in_time = delivery.status == "blocked" and delivery.block_reason == "revoked"
            sent_before = delivery.status == "sent" and delivery.sent_at < revoked_at[patient.pk]
            ok = (blocked_in_time and patient.pk not in received) or sent_before
        else:
            ok = delivery.status == "sent" and delivery.authorization.patient_id == patient.pk
        if not ok:
            wrong[patient.pk] = (delivery.status, delivery.block_reason, delivery.sent_at, revoked_at.get(patient.pk))
    assert wrong == {}, f"seed {seed}"
    assert delivery_sent_without_coverage_count(campaign_id=campaign.pk) == 0

    # (d) Sent deliveries and received messages are the same set, message for message.
    sent = {pid: d for pid, d in deliveries.items() if d.status == "sent"}
    assert len(sent) == len(records)
    assert {pid: d.message_id for pid, d in sent.items()} == {pid: r.message_id for pid, r in received.items()}

    # (e) The race happened: revocations completed while sending was under way, some hit a batch in flight
    # (their patient's message went out between the call and its return), and some arrived in time to block.
    during_send = [pid for pid, (_, after) in revocation_window.items() if first_received < after < last_received]
    mid_send = [
        pid
        for pid, (before, after) in revocation_window.items()
        if pid in received and before <= received[pid].received_at <= after
    ]
    blocked = [pid for pid in to_revoke if deliveries[pid].status == "blocked"]
    sent_then_revoked = [pid for pid in to_revoke if deliveries[pid].status == "sent"]
    print(
        f"\nrevocation race (seed {seed}): {len(records)} sent in {len(batches)} batches, {elapsed:.2f}s; "
        f"{len(to_revoke)} revocations: {len(during_send)} completed during the send, {len(mid_send)} landed "
        f"mid-send (own message in flight, waited for the batch), {len(blocked)} blocked in time, "
        f"{len(sent_then_revoked)} after their message"
    )
    assert len(during_send) >= 5, f"seed {seed}: the revocations did not overlap the send; retune sizes"
    assert blocked and sent_then_revoked
    assert mid_send, f"seed {seed}: no revocation hit a batch in flight; retune sizes and delays"
