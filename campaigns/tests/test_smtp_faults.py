"""Faults at the mail server, in the broker's redelivery and in a worker's clock (issue 16, item 5), each run
against real Celery workers and a faulty SMTP server, and each ending with the history checker
(campaigns.tests.history.history_check: nothing lost, nothing sent after a revocation or an expiry, duplicates only
in flight and flagged possible_duplicate, each message's evidence within its check-to-send window).

The server (campaigns.tests.smtp_faults): 421 and close after N messages of a session, as Amazon SES ends a
session; 451 at random (seeded); 550 for listed addresses; a stall in the middle of DATA longer than the
sender's check-to-send window; the connection cut after the DATA terminator, before the answer (the message
was received: a real in-flight duplicate). The broker: Redis with a visibility timeout shorter than the dispatch
task, so the same task is handed to a second worker while the first still runs it (acks_late). The clock: a worker
whose wall clock is ten minutes ahead or behind (libfaketime from Debian's `faketime`, for that worker's process
only), while authorizations expire mid-run by the database's clock.

Every run also revokes some patients mid-run through the real service (consent.services.authorizations
.authorization_revoke, as a patient's portal does) and has a few authorizations expire while the campaign sends.

Found by this suite, then fixed: the dispatch task backed off after every session a server ended with 421 (5, 10,
20, 40 s...), so 40 messages in sessions of 4 had not gone out after 90 s; a batch that made progress before a
temporary refusal now goes on at once (campaigns.tasks.campaign_dispatch_task, TransientSendError.progressed).

Marked `faults` (make test-faults; PostgreSQL and Redis). About two minutes on two cores.
"""
import glob
import json
import os
import re
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from celery import current_app as celery_app

from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.history import Reconciler, Recorder, history_check, history_collect, history_report
from campaigns.tests.smtp_faults import SmtpFaults, faulty_smtp_sink
from campaigns.tests.worker import QUEUES, worker_kill, worker_of_connection, worker_start
from conftest import requires_postgresql, requires_redis
from consent.models import Authorization
from consent.selectors.coverage import patient_suppression_list
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = [
    pytest.mark.faults,
    requires_postgresql,
    requires_redis,
    pytest.mark.django_db(transaction=True),
]

WINDOW = 1.0  # SEND_CHECK_WINDOW
LEASE_SECONDS = 3
REWAKE_EVERY = 1.0  # the reconciler's beat (production: 60 s)
SEND_TIMEOUT = 90  # seconds for the campaign to be sent once launched
EXPIRE_AFTER = 1.2  # seconds after the launch at which the expiring authorizations end (database clock)
WORKER_ENV = {
    "SEND_BATCH_SIZE": "8",
    "SEND_LEASE_SECONDS": str(LEASE_SECONDS),
    "SEND_CHECK_WINDOW": str(WINDOW),
    "HIPAAMAIL_TRANSPORT": "smtp",  # production's transport: one SMTP session per batch
    "SEND_RATE_LIMIT": "0",
}


def _broker_forget() -> None:
    """Empty the queues and the unacknowledged set, so that no task of another test comes back in this one."""
    with celery_app.connection_for_write() as broker:
        channel = broker.default_channel
        for queue in QUEUES:
            channel.queue_purge(queue)
        channel.client.delete(channel.unacked_key, channel.unacked_index_key, channel.unacked_mutex_key)


class Workers:
    """Real workers on the campaigns queue, each with its own log; all SIGKILLed at the end (the run is over)."""

    def __init__(self, sink, log_dir: Path):
        self.sink = sink
        self.log_dir = log_dir
        self.started: list = []  # (process, log path, log file)

    def start(self, *, prefix: tuple[str, ...] = (), env: dict | None = None, celery_config: tuple[str, ...] = ()):
        number = len(self.started) + 1
        path = self.log_dir / f"worker-{number}.log"
        log = open(path, "w")  # noqa: SIM115 - the worker writes to it until stop_all closes it
        worker = worker_start(
            self.sink, log, queues="campaigns", name=f"smtpfaults{number}", extra_env=WORKER_ENV | (env or {}),
            prefix=prefix, celery_config=celery_config,
        )  # fmt: skip
        self.started.append((worker, path, log))
        return worker

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(" ready." in path.read_text(errors="replace") for _, path, _ in self.started):
                return
            if any(worker.poll() is not None for worker, _, _ in self.started):
                break
            time.sleep(0.05)
        raise AssertionError(f"the workers did not start:\n{self.output()}")

    def logs(self) -> list[str]:
        return [path.read_text(errors="replace") for _, path, _ in self.started]

    def output(self) -> str:
        return "\n".join(
            f"--- {path.name} (exit {worker.poll()}) ---\n{path.read_text(errors='replace')[-6000:]}"
            for worker, path, _ in self.started
        )

    def stop_all(self) -> None:
        for worker, _, log in self.started:
            worker_kill(worker)
            log.close()


@pytest.fixture
def workers_for(tmp_path):
    """workers_for(sink) -> Workers; stopped, and the broker emptied, at the end of the test."""
    pools: list[Workers] = []
    _broker_forget()

    def make(sink) -> Workers:
        pools.append(Workers(sink, tmp_path))
        return pools[-1]

    yield make
    for pool in pools:
        pool.stop_all()
    _broker_forget()


class Run:
    """One campaign to `covered` patients (the last `expiring` of them, or one in `expiring_every`, authorized
    until `expire_after` seconds after the launch, by the database's clock), two patients without an authorization, and `revoke` patients revoked
    through the real service at `revoke_at` seconds after the launch. `history` once `execute` returns."""

    def __init__(
        self, *, covered: int = 40, expiring: int = 4, revoke: int = 3, revoke_at: float = 0.6,
        expire_after: float = EXPIRE_AFTER, expiring_every: int = 0,
    ):  # fmt: skip
        self.purpose = purpose_make()
        self.patients = [patient_make() for _ in range(covered)]
        self.uncovered = [patient_make() for _ in range(2)]
        # The last `expiring` patients (sent last, after their end); or, with `expiring_every`, one in that many
        # across the whole campaign (in every batch: some checked before their end, some after).
        if expiring_every:
            self.expiring = self.patients[1::expiring_every]
        else:
            self.expiring = self.patients[-expiring:] if expiring else []
        self.expire_after = expire_after
        self.revoked = [patient for patient in self.patients[covered // 2 :] if patient not in self.expiring][:revoke]
        self.revoke_at = revoke_at
        for patient in self.patients:
            if patient not in self.expiring:
                authorization_make(patient=patient, purpose=self.purpose)
        self.campaign = campaign_approved_make(purpose=self.purpose)
        self.recorder = Recorder()
        self.history = None

    def execute(self, sink, workers: Workers, *, reconcile: bool = True, then=None) -> None:
        """Launch (the workers are up), call `then()` if given, revoke on the timeline, let the reconciler beat,
        wait for "sent", then collect the history and check it."""
        # Granted just before the launch, so that they end while the campaign is sending.
        for patient in self.expiring:
            authorization_make(patient=patient, purpose=self.purpose, expires_in=timedelta(seconds=self.expire_after))
        launched = time.monotonic()
        campaign_launch(actor=None, campaign_id=self.campaign.pk)
        if then is not None:
            then()
        revoker = threading.Thread(target=self._revoke, args=(launched,), name="revoker")
        revoker.start()
        reconciler = Reconciler(self.recorder, every=REWAKE_EVERY) if reconcile else None
        if reconciler is not None:
            reconciler.__enter__()
        try:
            deadline = launched + SEND_TIMEOUT
            while time.monotonic() < deadline:
                if Campaign.objects.filter(pk=self.campaign.pk, status=Campaign.Status.SENT).exists():
                    break
                time.sleep(0.1)
        finally:
            if reconciler is not None:
                reconciler.__exit__(None, None, None)
            revoker.join(30)
        self.seconds = time.monotonic() - launched
        time.sleep(0.2)  # nothing should arrive now; if something does, it is in the history
        self.history = history_collect(
            window=WINDOW,
            campaign_ids=[self.campaign.pk],
            patient_ids=[patient.pk for patient in self.patients + self.uncovered],
            records=sink.records,
            recorder=self.recorder,
        )
        violations = history_check(self.history)
        assert violations == [], f"{history_report(self.history, violations)}\nworkers' output:\n{workers.output()}"

    def _revoke(self, launched: float) -> None:
        from django.db import connection

        try:
            time.sleep(max(0.0, launched + self.revoke_at - time.monotonic()))
            for patient in self.revoked:
                self.recorder.revocation(
                    channel="portal", patient_id=patient.pk, purpose_id=self.purpose.pk,
                    call=lambda patient=patient: [
                        revocation.authorization_id
                        for revocation in authorization_revoke(
                            actor=None, patient_id=patient.pk, purpose_id=self.purpose.pk, channel="portal"
                        )
                    ],
                )  # fmt: skip
        finally:
            connection.close()

    def deliveries(self) -> dict[int, Delivery]:
        return {d.patient_id: d for d in Delivery.objects.filter(campaign=self.campaign)}

    def copies(self, sink) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in sink.records:
            counts[record.message_id] = counts.get(record.message_id, 0) + 1
        return counts

    def assert_expiry_fell_mid_run(self, *, used_first: bool = False) -> None:
        """The expiring authorizations really ended while the campaign sent: the deliveries still queued at their
        end are blocked `expired` (the checker proved nothing left after); with `used_first`, some were sent
        before their end, and none was blocked early: the window that blocked it began (its audit event, on the
        database's clock, is later still) no earlier than one check-to-send window before the expiry."""
        deliveries = self.deliveries()
        outcomes = {deliveries[patient.pk].status for patient in self.expiring}
        reasons = {deliveries[patient.pk].block_reason for patient in self.expiring}
        assert Delivery.Status.BLOCKED in outcomes and reasons - {""} == {Delivery.BlockReason.EXPIRED}, (
            outcomes, reasons
        )
        if used_first:
            assert Delivery.Status.SENT in outcomes, outcomes
            expires_at = {
                a.patient_id: a.expires_at
                for a in Authorization.objects.filter(patient__in=self.expiring, purpose=self.purpose)
            }
            blocked_at = {}
            for event in AuditEvent.objects.filter(
                action="delivery.batch_dispatched", object_type="campaign", object_id=str(self.campaign.pk)
            ):
                for pk in event.details.get("blocked_expired", []):
                    blocked_at[pk] = event.occurred_at
            for patient in self.expiring:
                delivery = deliveries[patient.pk]
                if delivery.status == Delivery.Status.BLOCKED:
                    early = expires_at[patient.pk] - blocked_at[delivery.pk]
                    assert early <= timedelta(seconds=WINDOW), f"delivery {delivery.pk} blocked {early} before its expiry"

    def assert_revoked_got_nothing_after(self) -> None:
        deliveries = self.deliveries()
        for patient in self.revoked:
            delivery = deliveries[patient.pk]
            assert delivery.status == Delivery.Status.SENT or (
                delivery.status, delivery.block_reason) == (Delivery.Status.BLOCKED, Delivery.BlockReason.REVOKED)
        assert len(self.recorder.revocations) == len(self.revoked)
        assert not any(call.refused for call in self.recorder.revocations)


def _sent_or_ended(run: Run, *, failed: set[int] = frozenset()) -> None:
    """Every covered patient's delivery is sent, but for the revoked and the expiring (either) and `failed`."""
    deliveries = run.deliveries()
    ended = {patient.pk for patient in run.revoked + run.expiring}
    for patient in run.patients:
        delivery = deliveries[patient.pk]
        if patient.pk in failed:
            continue
        if patient.pk not in ended:
            assert delivery.status == Delivery.Status.SENT, (patient.pk, delivery.status, delivery.block_reason)
    for patient in run.uncovered:
        assert deliveries[patient.pk].block_reason == Delivery.BlockReason.NO_AUTHORIZATION


# --- The mail server ------------------------------------------------------------------------------------------


def test_r_send_covered_a_server_that_ends_each_session_with_421_after_4_messages_is_retried_until_all_are_sent(
    workers_for, tmp_path
):
    """R-SEND-COVERED, R-REVOKE-ANYTIME, R-SEND-EVIDENCE: the server answers 421 and closes the channel at the fifth
    MAIL FROM of every session (as Amazon SES ends a session at its limit). Each batch sends what the session took,
    the rest is queued again unflagged (nothing of it was handed over) and the next session sends it: every
    covered patient gets exactly one message, none flagged possible_duplicate, in a time close to a clean run's.
    Found by this test: the dispatch task backed off after every session (5, 10, 20, 40 s...), so the campaign
    took minutes; a batch that made progress now goes on at once (campaigns.tasks.campaign_dispatch_task)."""
    run = Run()
    with faulty_smtp_sink(SmtpFaults(session_limit=4), delay=0.02) as sink:
        workers = workers_for(sink)
        workers.start()
        workers.start()
        workers.wait_ready()
        # No reconciler: production's runs once a minute, and here its wake-ups every second would hide a retry
        # that backs off after each session.
        run.execute(sink, workers, reconcile=False)

    refusals = sink.handler.refusals
    assert refusals and {r.code for r in refusals} == {421}
    counts = run.copies(sink)
    assert set(counts.values()) == {1}
    assert not Delivery.objects.filter(campaign=run.campaign, possible_duplicate=True).exists()
    _sent_or_ended(run)
    run.assert_revoked_got_nothing_after()
    run.assert_expiry_fell_mid_run()
    # Retried at once, not after a back-off per session: 40 messages in sessions of 4 is ten 421s.
    assert run.seconds < 20, f"the campaign took {run.seconds:.1f} s"


def test_r_send_covered_r_bounce_suppress_451_at_random_is_retried_and_550_fails_and_suppresses_the_address(
    workers_for, tmp_path
):
    """R-SEND-COVERED, R-BOUNCE-SUPPRESS, R-SEND-EVIDENCE: the server answers 451 at the end of DATA for about one
    message in eight (seeded), and 550 at RCPT TO for three addresses. A 451 is temporary: that delivery is queued
    again and sent later, exactly once. A 550 is the product's permanent failure: the delivery is failed with
    smtp_code 550 and a hard bounce, its address is suppressed, and nothing reaches the server for it."""
    run = Run()
    refused = run.patients[3:6]
    faults = SmtpFaults(temporary_rate=0.125, seed=16, refused=frozenset(p.email.lower() for p in refused))
    with faulty_smtp_sink(faults, delay=0.02) as sink:
        workers = workers_for(sink)
        workers.start()
        workers.start()
        workers.wait_ready()
        run.execute(sink, workers)

    refusals = sink.handler.refusals
    temporary = [r for r in refusals if r.code == 451]
    assert temporary, "no 451 was answered: the fault did not happen"
    assert {r.recipient for r in refusals if r.code == 550} == {p.email.lower() for p in refused}
    counts = run.copies(sink)
    assert set(counts.values()) == {1}, "a message reached the server twice"
    deliveries = run.deliveries()
    # Each message answered 451 was sent later (once); none is flagged: the server said it did not take it.
    for refusal in temporary:
        assert counts.get(refusal.message_id) == 1, refusal
    assert not Delivery.objects.filter(campaign=run.campaign, possible_duplicate=True).exists()
    for patient in refused:
        delivery = deliveries[patient.pk]
        assert (delivery.status, delivery.smtp_code, delivery.bounce_type, delivery.authorization_id) == (
            Delivery.Status.FAILED, 550, "hard", None
        )
        assert not any(patient.email.lower() in record.recipients for record in sink.records)
    # Suppressed as a hard bounce: no later marketing message goes to these addresses.
    assert patient_suppression_list(patient_ids=[p.pk for p in refused]) == {p.pk: "bounced" for p in refused}
    _sent_or_ended(run, failed={p.pk for p in refused})
    run.assert_revoked_got_nothing_after()
    run.assert_expiry_fell_mid_run()
    assert run.seconds < 20, f"the campaign took {run.seconds:.1f} s"


def test_r_send_evidence_a_stall_mid_data_and_a_connection_cut_after_data_are_resent_and_flagged(
    workers_for, tmp_path
):
    """R-SEND-EVIDENCE, R-SEND-COVERED, R-REVOKE-ANYTIME: the server stops reading two messages half-way through
    their DATA for three times the check-to-send window, and cuts the connection of two others after their
    terminating dot, before answering. The sender gives up on a stalled message when its window closes
    (WindowClosed), queues it again marked possible_duplicate and re-checks it; the server may keep nothing or,
    once its stall ends, read the rest and take it (both seen), so the patient gets one copy or two, flagged. A
    cut-off message had reached the server whole: it is sent again, with the same Message-ID. Exactly those
    four deliveries are flagged, and only they are received twice."""
    run = Run()
    faults = SmtpFaults(stall_at=frozenset({3, 17}), stall_seconds=3 * WINDOW, drop_at=frozenset({7, 24}))
    with faulty_smtp_sink(faults, delay=0.02) as sink:
        workers = workers_for(sink)
        workers.start()
        workers.start()
        workers.wait_ready()
        run.execute(sink, workers)

    counters = sink.handler.counters
    stalled = {message_id for _, message_id in counters.stalled}
    dropped = set(counters.dropped)
    assert sorted(ordinal for ordinal, _ in counters.stalled) == [3, 17] and len(dropped) == 2, counters
    counts = run.copies(sink)
    twice = {message_id for message_id, count in counts.items() if count == 2}
    # Each cut-off message arrived twice; a stalled one once, or twice when the server read it whole after the
    # stall (the sender had gone); nothing else twice, nothing three times.
    assert dropped <= twice <= dropped | stalled and set(counts.values()) <= {1, 2}, (counts, dropped, stalled)
    assert all(counts.get(message_id) in (1, 2) for message_id in stalled)
    flagged = set(
        Delivery.objects.filter(campaign=run.campaign, possible_duplicate=True).values_list("message_id", flat=True)
    )
    # Exactly the cut-off ones and the stalled ones (which may have arrived, as far as the sender can know).
    assert flagged == dropped | stalled, (flagged, dropped, stalled)
    _sent_or_ended(run)
    run.assert_revoked_got_nothing_after()
    run.assert_expiry_fell_mid_run()


# --- The broker -----------------------------------------------------------------------------------------------

VISIBILITY = ("broker_transport_options=(json)" + json.dumps(
    {"visibility_timeout": 2, "unacked_restore_interval": 1, "unacked_restore_throttle": 1}
),)  # fmt: skip


def test_r_send_covered_a_dispatch_task_redelivered_after_the_visibility_timeout_sends_nothing_twice(
    workers_for, tmp_path
):
    """R-SEND-COVERED, R-SEND-EVIDENCE: Redis hands an unacknowledged task to another consumer once its visibility
    timeout has passed (here 2 s; Redis's default is an hour, and a big campaign's dispatch task runs longer). The
    launch's one dispatch task outlives it (acks_late), so the idle second worker receives the same task while the
    first still runs it, and both send the campaign at once. The leases keep their batches apart: every covered
    patient gets exactly one message and none is flagged possible_duplicate. No reconciler runs here: the second
    worker has only the redelivered task to wake it."""
    run = Run(covered=60, revoke_at=2.5)
    with faulty_smtp_sink(SmtpFaults(), delay=0.08) as sink:
        workers = workers_for(sink)
        workers.start(celery_config=VISIBILITY)
        workers.start(celery_config=VISIBILITY)
        workers.wait_ready()
        run.execute(sink, workers, reconcile=False)

    received = [set(re.findall(r"campaign_dispatch_task\[([0-9a-f-]+)\] received", log)) for log in workers.logs()]
    assert received[0] & received[1], f"no dispatch task was handed to both workers:\n{workers.output()}"
    senders = {record.peer for record in sink.records}
    assert len(senders) > 1
    counts = run.copies(sink)
    assert set(counts.values()) == {1}
    assert not Delivery.objects.filter(campaign=run.campaign, possible_duplicate=True).exists()
    _sent_or_ended(run)
    run.assert_revoked_got_nothing_after()


# --- The clock ------------------------------------------------------------------------------------------------

# Debian's faketime package (its libfaketime): preloaded into that worker's process alone.
LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ INFO celery\.apps\.worker \S+ ready\.", re.MULTILINE)


@pytest.mark.skipif(
    LIBFAKETIME is None and os.environ.get("CI") != "true", reason="needs Debian's faketime (.ci/run installs it)"
)
@pytest.mark.parametrize("offset", ["+10m", "-10m"])
def test_r_send_covered_a_worker_whose_clock_is_ten_minutes_wrong_honours_expiry_by_the_database_clock(
    workers_for, tmp_path, offset, settings
):
    """R-SEND-COVERED, R-REVOKE-ANYTIME, R-SEND-EVIDENCE: one of two workers runs with its wall clock ten minutes
    ahead, or behind (libfaketime, that process only; its monotonic clock is left alone), while authorizations
    expire mid-run on the database's clock. Coverage is checked at the database's now(), leases are set and
    judged on it, and the evidence is the check's timestamp plus elapsed monotonic time: so a fast clock does
    not block what is still covered, a slow one does not send after an expiry, and neither loses its leases
    to the other worker (nothing is sent twice, nothing is flagged)."""
    settings.HIPAAMAIL_SEND_DISPATCHERS = 2  # the launch wakes both workers at once
    # About 6 s of sending, the skewed worker alone for the first seconds (the other starts after the launch);
    # one authorization in four ends 3 s after the launch: some are checked well before (sent), some after.
    run = Run(covered=80, expiring_every=4, expire_after=3.0)
    skewed = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    with faulty_smtp_sink(SmtpFaults(), delay=0.1) as sink:
        workers = workers_for(sink)
        first = workers.start(env=skewed)
        workers.wait_ready()
        senders = []  # which worker sent each message (its SMTP connection's process), read in the server's loop
        sink.handler.on_data = lambda record: senders.append(worker_of_connection(started, record.peer[1]))
        started = [first]
        run.execute(sink, workers, then=lambda: started.append(workers.start()))
        second = started[1]

    # The skewed worker really ran on its own clock (its "ready" line is stamped ten minutes off the other's,
    # though both started together), and really sent part of the campaign.
    ready = [datetime.strptime(LOG_TIME.search(log).group(1), "%Y-%m-%d %H:%M:%S") for log in workers.logs()]
    skew = (ready[0] - ready[1]).total_seconds()
    assert abs(skew - (600 if offset.startswith("+") else -600)) < 60, (offset, ready)
    assert senders.count(first) >= 5 and senders.count(second) >= 5, (senders.count(first), senders.count(second))
    counts = run.copies(sink)
    assert set(counts.values()) == {1}
    assert not Delivery.objects.filter(campaign=run.campaign, possible_duplicate=True).exists()
    _sent_or_ended(run)
    run.assert_revoked_got_nothing_after()
    run.assert_expiry_fell_mid_run(used_first=True)
