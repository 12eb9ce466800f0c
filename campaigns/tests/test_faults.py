"""Fault injection: the send pipeline's recovery promises, proven with real processes (DESIGN.md, "The send
pipeline", step 4, and the send pipeline's invariants stated under "The central invariant").

    No queued delivery is ever lost: each reaches a terminal state, even after a worker is killed, the broker
    loses its queue, or the database restarts; a message is sent twice only if it was in flight during a crash,
    and then the delivery says so (possible_duplicate), with the same Message-ID.

Each test runs real Celery workers (campaigns.tests.worker: solo pool, this test's database, the test broker) that
send with the production transport (HIPAAMAIL_TRANSPORT=smtp) to an SMTP sink that takes SINK_DELAY seconds to
answer each message, so that a fault lands in the middle of a batch: the sink records a message when its DATA
arrives, then waits before answering 250. Then it breaks something for real — SIGKILL, the broker's queue purged,
the worker's PostgreSQL backends terminated — and recovers the way production does: a worker (restarted by the
test, as an operator's supervisor would) and the reconciler, campaigns.tasks.campaign_rewake_task, published to
the broker every REWAKE_EVERY seconds as beat publishes it every minute. Leases are LEASE_SECONDS long.

The last test found a gap, since fixed: a fault between a campaign's last batch and the step that marks it sent
left it "sending" for good; the reconciler now finishes such a campaign.

Slow (about a minute for the module) and rough on shared services: marked `faults`, run alone with
`make test-faults` (PostgreSQL and Redis; skipped otherwise). The PostgreSQL server is never restarted: only
this test database's own backends are terminated, which is what a server restart does to the workers.
"""
import time
from collections import Counter
from pathlib import Path

import pytest
from celery import current_app as celery_app
from django.db import connection, transaction
from django.db.models.functions import Now

from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery
from campaigns.periodic import campaign_launch_due_task, campaign_rewake_task
from campaigns.selectors.campaigns import delivery_sent_without_coverage_count
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.smtp_server import smtp_sink
from campaigns.tests.worker import QUEUES, worker_kill, worker_start, worker_stop
from conftest import requires_postgresql, requires_redis
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = [
    pytest.mark.faults,
    requires_postgresql,
    requires_redis,
    pytest.mark.django_db(transaction=True),
]

BATCH_SIZE = 10
LEASE_SECONDS = 2  # longer than a batch takes (BATCH_SIZE * SINK_DELAY), short enough to wait for
SINK_DELAY = 0.1  # seconds the sink takes to answer each message
KILL_AFTER = 15  # messages arrived: the second batch is half sent, none of it committed
REWAKE_EVERY = 1.0  # the reconciler's period (beat: 60 s, for leases of 300 s)
TIMEOUT = 45  # seconds any one wait may take before the test fails
POLL = 0.05

WORKER_ENV = {
    "SEND_BATCH_SIZE": str(BATCH_SIZE),
    "SEND_LEASE_SECONDS": str(LEASE_SECONDS),
    "HIPAAMAIL_TRANSPORT": "smtp",  # production's transport, one SMTP connection per batch
    "SEND_RATE_LIMIT": "0",
    # One batch (10 x 0.1 s) is one check-to-send window here, so "the batch in flight at the kill" is exactly the
    # uncommitted window these faults are about; windows split by time and killed mid-way are the history
    # checker's (campaigns/tests/test_history.py, ADR 0010).
    "SEND_CHECK_WINDOW": "5",
    "SEND_LOCK_SECONDS": "5",
}
TERMINAL = {Delivery.Status.SENT, Delivery.Status.BLOCKED, Delivery.Status.FAILED}


# --- Helpers ------------------------------------------------------------------------------------------------


class GaveUp(AssertionError):
    """A wait's deadline passed."""


class CampaignStillSending(GaveUp):
    """The reconciler ran, again and again, and the campaign did not reach "sent"."""


def _wait_for(condition, what: str, timeout: float = TIMEOUT):
    """Poll `condition` until it returns something truthy (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise GaveUp(f"gave up after {timeout:.0f} s waiting for {what}; see the workers' output")
        time.sleep(POLL)


def _broker_forget() -> None:
    """Empty the queues and the unacknowledged set: what a Redis restarted without persistence holds. Also keeps
    a killed worker's unacknowledged task from being redelivered (after its visibility timeout) to a later run."""
    with celery_app.connection_for_write() as broker:
        channel = broker.default_channel
        for queue in QUEUES:
            channel.queue_purge(queue)
        channel.client.delete(channel.unacked_key, channel.unacked_index_key, channel.unacked_mutex_key)


def _other_backends(*, terminate: bool = False) -> list[int]:
    """The client backends of this test database other than the test's own (the workers'); terminated if asked.
    The terminate call is in the select list, which runs only on the rows the WHERE kept: in the WHERE clause
    PostgreSQL could evaluate it before `pid <> pg_backend_pid()` and end this very connection."""
    action = "pg_terminate_backend(pid)" if terminate else "true"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT pid, {action} FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND backend_type = 'client backend'"""
        )
        return [pid for pid, _ in cursor.fetchall()]


def _backends_waiting_for_a_lock() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT pid FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"""
        )
        return [pid for (pid,) in cursor.fetchall()]


class Workers:
    """Real workers on the campaigns queue, all writing to one log; stopped (and their log printed, which pytest
    shows when the test fails) at the end of the test."""

    def __init__(self, sink, log_path: Path):
        self.sink = sink
        self.log_path = log_path
        self.log = open(log_path, "a")  # closed in stop_all; append mode: the workers share the file
        self.started: list = []

    def start(self):
        worker = worker_start(
            self.sink, self.log, queues="campaigns", name=f"faults{len(self.started) + 1}", extra_env=WORKER_ENV
        )
        self.started.append(worker)
        return worker

    @property
    def current(self):
        return self.started[-1]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop_all(self) -> None:
        for worker in self.started:
            worker_stop(worker)
        self.log.close()
        codes = [worker.returncode for worker in self.started]
        print(f"workers' output (exit codes {codes}):\n{self.output()}")


@pytest.fixture
def sink():
    with smtp_sink(delay=SINK_DELAY) as sink:
        yield sink


@pytest.fixture
def workers(sink, tmp_path):
    _broker_forget()
    pool = Workers(sink, tmp_path / "workers.log")
    try:
        yield pool
    finally:
        pool.stop_all()
        _broker_forget()


def _campaign_with(covered: int, uncovered: int = 2):
    """A campaign for a purpose `covered` patients authorized (and `uncovered` others did not)."""
    purpose = purpose_make()
    patients = [patient_make() for _ in range(covered)]
    for patient in patients:
        authorization_make(patient=patient, purpose=purpose)
    others = [patient_make() for _ in range(uncovered)]
    return campaign_approved_make(purpose=purpose), patients, others


def _send_until_records(workers: Workers, campaign: Campaign, count: int) -> None:
    """Launch (the launch's on_commit publishes the wake-up) with a worker running; return once `count` messages
    arrived, the last one still waiting for its 250."""
    workers.start()
    campaign_launch(actor=None, campaign_id=campaign.pk)
    _wait_for(
        lambda: len(workers.sink.records) >= count or workers.current.poll() is not None,
        f"{count} messages at the sink",
    )
    assert workers.current.poll() is None, "the worker died before the fault was injected"


def _recover(workers: Workers, campaign: Campaign, *, timeout: float = TIMEOUT) -> None:
    """Production's recovery, compressed: a supervisor keeps a worker running (starting another when it exits)
    and beat publishes the reconciler every REWAKE_EVERY seconds, until the campaign is sent. Raises
    CampaignStillSending when the reconciler ran at least twice and the campaign is still not sent after `timeout`
    seconds."""
    if not workers.started or workers.current.poll() is not None:
        workers.start()
    next_wake = 0.0
    wakes: list[str] = []

    def sent() -> bool:
        nonlocal next_wake
        if Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.SENT).exists():
            return True
        if workers.current.poll() is not None:
            workers.start()
        if time.monotonic() >= next_wake:
            wakes.append(campaign_rewake_task.delay().id)
            next_wake = time.monotonic() + REWAKE_EVERY
        return False

    try:
        _wait_for(sent, "the campaign to be sent", timeout)
    except GaveUp:
        output = workers.output()
        ran = sum(f"[{wake}] succeeded" in output for wake in wakes)
        assert ran >= 2, f"the reconciler ran {ran} times in {timeout:.0f} s; see the workers' output"
        status = Campaign.objects.values_list("status", flat=True).get(pk=campaign.pk)
        queued = Delivery.objects.filter(campaign=campaign, status=Delivery.Status.QUEUED).count()
        raise CampaignStillSending(
            f"campaign still {status!r} with {queued} deliveries queued after {timeout:.0f} s and {ran} reconciler runs"
        ) from None


def _copies(sink) -> dict[str, list]:
    by_address: dict[str, list] = {}
    for record in sink.records:
        (address,) = record.recipients
        by_address.setdefault(address, []).append(record)
    return by_address


def _assert_nothing_lost(campaign: Campaign, covered: list, uncovered: list, sink) -> dict[str, list]:
    """The promises after any fault: every delivery terminal and unleased, the campaign sent, every covered
    patient sent at least one message and at most two, each copy with its delivery's Message-ID, a second copy
    only where the delivery says possible_duplicate, the others blocked with their reason and sent nothing, and
    no delivery sent without an authorization that covered it. Returns the copies by address."""
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENT and campaign.finished_at is not None
    deliveries = {d.patient_id: d for d in Delivery.objects.filter(campaign=campaign).select_related("authorization")}
    assert len(deliveries) == len(covered) + len(uncovered)
    assert {d.status for d in deliveries.values()} <= TERMINAL
    assert not Delivery.objects.filter(campaign=campaign, lease_expires_at__isnull=False).exists()

    copies = _copies(sink)
    assert set(copies) <= {patient.email for patient in covered}, "mail to a patient who was not covered"
    for patient in covered:
        delivery = deliveries[patient.pk]
        assert delivery.status == Delivery.Status.SENT, (patient.pk, delivery.status, delivery.block_reason)
        assert (delivery.authorization.patient_id, delivery.authorization.purpose_id) == (
            patient.pk,
            campaign.purpose_id,
        )
        received = copies.get(patient.email, [])
        assert 1 <= len(received) <= 2, (delivery.pk, len(received))
        # R-SEND-EVIDENCE: every copy carries the Message-ID the delivery recorded, so a duplicate is recognisable.
        assert {record.message_id for record in received} == {delivery.message_id} != {""}
        if len(received) == 2:
            assert delivery.possible_duplicate, f"delivery {delivery.pk} went out twice and does not say so"
    for patient in uncovered:
        delivery = deliveries[patient.pk]
        assert (delivery.status, delivery.block_reason, delivery.authorization_id) == (
            Delivery.Status.BLOCKED,
            Delivery.BlockReason.NO_AUTHORIZATION,
            None,
        )
    assert delivery_sent_without_coverage_count(campaign_id=campaign.pk) == 0
    return copies


def _in_flight(campaign: Campaign) -> set[int]:
    """Deliveries claimed and not recorded: still queued, still leased."""
    return set(
        Delivery.objects.filter(
            campaign=campaign, status=Delivery.Status.QUEUED, lease_expires_at__isnull=False
        ).values_list("id", flat=True)
    )


# --- The tests ----------------------------------------------------------------------------------------------


def test_r_send_covered_a_worker_killed_mid_batch_loses_nothing_and_a_resend_says_possible_duplicate(workers):
    """R-SEND-COVERED, R-SEND-EVIDENCE: a worker SIGKILLed while the mail server holds a message of its second
    batch. The batch's leases expire, the reconciler wakes a new worker, the campaign ends sent: every delivery
    terminal, every covered patient mailed; exactly the messages that reached the server before the kill and
    were not committed go out twice, each time with the same Message-ID, and exactly the deliveries of the
    killed batch say possible_duplicate."""
    campaign, covered, uncovered = _campaign_with(60)
    by_email = {patient.email: patient.pk for patient in covered}

    # Given a worker killed in the middle of a batch
    _send_until_records(workers, campaign, KILL_AFTER)
    worker_kill(workers.current)
    arrived = {by_email[address] for address in _copies(workers.sink)}
    committed = set(
        Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT).values_list("patient_id", flat=True)
    )
    in_flight = _in_flight(campaign)
    in_flight_patients = set(Delivery.objects.filter(pk__in=in_flight).values_list("patient_id", flat=True))
    assert 0 < len(committed) < len(arrived) < len(covered)
    assert committed <= arrived and arrived - committed <= in_flight_patients
    assert len(in_flight) == BATCH_SIZE

    # When a new worker and the reconciler take over
    _recover(workers, campaign)

    # Then nothing was lost, and only what was in flight went out twice, saying so.
    copies = _assert_nothing_lost(campaign, covered, uncovered, workers.sink)
    twice = {by_email[address] for address, received in copies.items() if len(received) == 2}
    assert twice == arrived - committed
    assert set(Delivery.objects.filter(campaign=campaign, possible_duplicate=True).values_list("id", flat=True)) == (
        in_flight
    )
    assert set(Delivery.objects.filter(campaign=campaign, attempts=2).values_list("id", flat=True)) == in_flight


def test_r_send_covered_a_broker_that_lost_its_queue_is_recovered_by_the_reconciler_exactly_once(workers):
    """R-SEND-COVERED, R-SEND-EVIDENCE: the launch's wake-up is lost with the broker's queue before any worker
    took it. A worker that starts then does nothing (the database holds the work, the broker held only the
    wake-up); the reconciler's wake sends every covered patient exactly one message, none possible_duplicate."""
    workers.sink.handler.delay = 0.0  # nothing to interrupt here
    campaign, covered, uncovered = _campaign_with(20)

    # Given a launch whose wake-up the broker then loses
    campaign_launch(actor=None, campaign_id=campaign.pk)
    with celery_app.connection_for_write() as broker:
        assert broker.default_channel.queue_purge("campaigns") == 1
    _broker_forget()

    # When a worker starts, nothing happens: a task published after it started is consumed, and still nothing.
    workers.start()
    probe = campaign_launch_due_task.delay()  # no campaign is due: a no-op that shows in the log
    _wait_for(lambda: f"[{probe.id}] succeeded" in workers.output(), "the worker to consume the probe task")
    assert workers.sink.records == []
    assert set(
        Delivery.objects.filter(campaign=campaign, patient__in=covered).values_list(
            "status", "attempts", "lease_expires_at"
        )
    ) == {(Delivery.Status.QUEUED, 0, None)}

    # When the reconciler wakes the campaign (once)
    campaign_rewake_task.delay()
    _wait_for(
        lambda: Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.SENT).exists(),
        "the campaign to be sent",
    )

    # Then everything went out exactly once.
    copies = _assert_nothing_lost(campaign, covered, uncovered, workers.sink)
    assert Counter(len(received) for received in copies.values()) == {1: len(covered)}
    assert not Delivery.objects.filter(campaign=campaign, possible_duplicate=True).exists()
    assert set(
        Delivery.objects.filter(campaign=campaign, patient__in=covered).values_list("attempts", flat=True)
    ) == {1}


def test_r_send_covered_database_connections_cut_mid_send_lose_nothing_and_a_resend_says_possible_duplicate(
    workers,
):
    """R-SEND-COVERED, R-SEND-EVIDENCE: the worker's PostgreSQL backends are terminated (what a database restart
    does to it) while a batch is at the mail server. The batch cannot be recorded; its leases expire; the
    reconciler (and a restarted worker, if it died) finishes the campaign. Nothing is lost, and every message
    sent twice belongs to the cut batch, whose deliveries all say possible_duplicate."""
    campaign, covered, uncovered = _campaign_with(60)
    by_email = {patient.email: patient.pk for patient in covered}

    # Given a worker whose database connections are cut in the middle of a batch
    _send_until_records(workers, campaign, KILL_AFTER)
    assert _other_backends(terminate=True), "the worker had no database connection to cut"
    in_flight = _wait_for(lambda: _in_flight(campaign), "the cut batch to be rolled back")
    in_flight_patients = set(Delivery.objects.filter(pk__in=in_flight).values_list("patient_id", flat=True))
    assert len(in_flight) == BATCH_SIZE

    # When the reconciler (and the supervisor) recover
    _recover(workers, campaign)

    # Then nothing was lost, and what went out twice was in flight at the cut and says so.
    copies = _assert_nothing_lost(campaign, covered, uncovered, workers.sink)
    twice = {by_email[address] for address, received in copies.items() if len(received) == 2}
    assert twice and twice <= in_flight_patients
    assert set(Delivery.objects.filter(campaign=campaign, possible_duplicate=True).values_list("id", flat=True)) == (
        in_flight
    )


def test_r_revoke_anytime_a_revocation_while_a_killed_batch_is_leased_blocks_its_recovered_send(workers):
    """R-REVOKE-ANYTIME, R-SEND-COVERED, R-SEND-EVIDENCE: a worker is killed mid-batch; once its leases have
    expired, two patients of that batch revoke — one whose message had reached the server before the kill, one
    whose message had not. The recovered batch blocks both (reason revoked, no authorization recorded) and sends
    them nothing more: the first keeps the one copy that left before the revocation, and her delivery says
    possible_duplicate; the second receives nothing. Everyone else is sent."""
    campaign, covered, uncovered = _campaign_with(30)
    by_email = {patient.email: patient.pk for patient in covered}

    # Given a worker killed in the middle of a batch
    _send_until_records(workers, campaign, KILL_AFTER)
    worker_kill(workers.current)
    arrived = {by_email[address] for address in _copies(workers.sink)}
    in_flight = Delivery.objects.filter(pk__in=_in_flight(campaign)).order_by("id")
    reached_the_server = next(d for d in in_flight if d.patient_id in arrived)
    never_left = next(d for d in in_flight if d.patient_id not in arrived)
    # The killed worker's transaction is rolled back (its backend gone) and its leases have expired.
    _wait_for(lambda: not _other_backends(), "the killed worker's database backend to end")
    _wait_for(
        lambda: not Delivery.objects.filter(pk__in=_in_flight(campaign), lease_expires_at__gt=Now()).exists(),
        "the killed batch's leases to expire",
    )

    # When both patients revoke before any worker recovers the batch
    for delivery in (reached_the_server, never_left):
        authorization_revoke(
            actor=None, patient_id=delivery.patient_id, purpose_id=campaign.purpose_id, channel="portal"
        )
    revoked_at = time.time()
    _recover(workers, campaign)

    # Then their deliveries are blocked as revoked, and nothing reached the server for them after the revocation.
    revoked = {reached_the_server.patient_id, never_left.patient_id}
    for delivery in (reached_the_server, never_left):
        delivery.refresh_from_db()
        assert (delivery.status, delivery.block_reason, delivery.authorization_id, delivery.sent_at) == (
            Delivery.Status.BLOCKED,
            Delivery.BlockReason.REVOKED,
            None,
            None,
        )
    copies = _copies(workers.sink)
    email_of = {patient.pk: patient.email for patient in covered}
    assert [r.received_at < revoked_at for r in copies[email_of[reached_the_server.patient_id]]] == [True]
    assert email_of[never_left.patient_id] not in copies
    assert reached_the_server.possible_duplicate and never_left.possible_duplicate
    # R-SEND-EVIDENCE: the recovering batch's audit event names both as blocked for revocation.
    assert any(
        {reached_the_server.pk, never_left.pk} <= set(event.details.get("blocked_revoked", []))
        for event in AuditEvent.objects.filter(
            action="delivery.batch_dispatched", object_type="campaign", object_id=str(campaign.pk)
        )
    )
    # And every other covered patient was sent, with nothing sent without coverage.
    still_covered = [patient for patient in covered if patient.pk not in revoked]
    deliveries = Delivery.objects.filter(campaign=campaign, patient__in=still_covered)
    assert set(deliveries.values_list("status", flat=True)) == {Delivery.Status.SENT}
    assert all(email_of[patient.pk] in copies for patient in still_covered)
    assert not any(patient.email in copies for patient in uncovered)
    assert not Delivery.objects.filter(campaign=campaign, status=Delivery.Status.QUEUED).exists()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENT
    assert delivery_sent_without_coverage_count(campaign_id=campaign.pk) == 0


# --- Found by this suite, then fixed ---------------------------------------------------------------------------
# A fault between a campaign's last batch and the step that marks it sent left it "sending" for good: the
# reconciler only woke campaigns with a queued delivery. It now also finishes a sending campaign with nothing
# queued (campaigns.selectors.campaigns.campaign_unmarked_sent_list; unit tests in test_pipeline.py).


@pytest.mark.parametrize("fault", ["sigkill", "connection_cut"])
def test_r_send_evidence_a_fault_after_the_last_batch_still_ends_with_the_campaign_sent(workers, fault):
    """R-SEND-EVIDENCE (the report and the progress bar say where a campaign is): every message has gone out
    and been recorded when the worker dies, or loses its database connection, on its way to marking the
    campaign sent (held there, deterministically, by the test's lock on the campaign's row). The reconciler
    and a worker must still bring the campaign to "sent", sending nothing again."""
    campaign, covered, uncovered = _campaign_with(2 * BATCH_SIZE)
    workers.start()
    campaign_launch(actor=None, campaign_id=campaign.pk)
    _wait_for(lambda: workers.sink.records, "the first message at the sink")

    # Given the worker stopped on its way from the last batch to campaign_finish_if_done (the campaign's row is
    # locked by this test; nothing else in a batch locks it), then killed or cut off there
    with transaction.atomic():
        Campaign.objects.select_for_update().get(pk=campaign.pk)
        (waiting,) = _wait_for(_backends_waiting_for_a_lock, "the worker to wait for the campaign's row")
        assert not Delivery.objects.filter(campaign=campaign, status=Delivery.Status.QUEUED).exists()
        assert Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.SENDING).exists()
        if fault == "sigkill":
            worker_kill(workers.current)
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [waiting])
    assert len(workers.sink.records) == len(covered)

    # When the reconciler runs (a new worker started if the old one is gone)
    _recover(workers, campaign, timeout=LEASE_SECONDS + 6 * REWAKE_EVERY)

    # Then the campaign is sent, and nobody received anything twice.
    copies = _assert_nothing_lost(campaign, covered, uncovered, workers.sink)
    assert Counter(len(received) for received in copies.values()) == {1: len(covered)}
