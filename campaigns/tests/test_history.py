"""The history checker, run (issue 11, item 7): random concurrent runs of the real send pipeline on PostgreSQL,
each checked against what the SMTP server received (R-SEND-COVERED, R-REVOKE-ANYTIME, R-SEND-EVIDENCE).

Each example is a scenario program drawn by Hypothesis: patients with consents for two marketing purposes
(lasting, expiring a fraction of a second to a few seconds after the run starts, or ending on an event),
campaigns over overlapping segments launched at chosen instants, and a timeline of actions — revocations on
every channel (the portal's revoke service, a POST to the one-click unsubscribe URL a patient received, the
one-click service itself, a written revocation recorded by staff), expiry events recorded mid-send, and SIGKILLs
of sender processes — plus the senders' settings: SEND_RATE_LIMIT (shared through Redis), batch size,
SEND_CHECK_WINDOW and how slowly the SMTP server answers. It runs against two real Celery workers at once
(campaigns.tests.worker, the production smtp transport, SEND_LEASE_SECONDS short enough for recovery within the
run), a killed one replaced as a supervisor would, and the reconciler (campaigns.tasks.campaign_rewake_task)
running on a beat. When every campaign is finished, the recorded history (campaigns.tests.history) is checked
by campaigns.tests.history.history_check, whose docstring states the rules.

Why a @given over scenario programs rather than a RuleBasedStateMachine: the system under test runs on its
own, in other processes, on the wall clock. What matters is *when* each action lands against the windows in
flight, so an example is a timeline executed by one driver (each call in its own thread, so a revocation that
waits for a window's lock does not delay the next action), and the rules can only be decided on the whole
history once every sender is quiet: a state machine's per-step invariants would have nothing settled to check.
Shrinking (and Hypothesis's replay of a failure) cannot reproduce a timing anyway, so both are off: a failing
example is reported as it ran, with its scenario, the violations, the whole history and the seed
(HISTORY_SEED=<seed> regenerates the same scenarios; the timing is the machine's).

Settings: HISTORY_EXAMPLES (default 12) and HISTORY_SEED (default random). On a 2-core machine an example
takes about 10 s, so the default fits the history suite's budget of about six minutes with room to spare.
"""
import asyncio
import itertools
import os
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import pytest
from celery import current_app as celery_app
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, Phase, assume, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.tests.factories import staff_make
from campaigns.models import Campaign, Delivery
from campaigns.sending.messages import unsubscribe_token
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_approve, campaign_create_draft, campaign_submit
from campaigns.services.segments import segment_save
from campaigns.services.unsubscribe import delivery_unsubscribe
from campaigns.tests.history import (
    Reconciler,
    Recorder,
    Senders,
    history_check,
    history_collect,
    history_figures,
    history_report,
)
from campaigns.tests.smtp_server import smtp_sink
from conftest import requires_postgresql, requires_redis
from consent.services.authorizations import authorization_grant
from consent.services.portal import portal_authorization_revoke
from consent.services.written import revocation_written_record
from consent.tests.factories import patient_make, purpose_make

pytestmark = [
    pytest.mark.history,
    pytest.mark.postgresql,
    requires_postgresql,
    requires_redis,
    pytest.mark.django_db(transaction=True),
]

EXAMPLES = int(os.environ.get("HISTORY_EXAMPLES") or 12)
SEED = int(os.environ.get("HISTORY_SEED") or random.randrange(2**32))
SENDERS = 2  # worker processes sending at once
LEASE_SECONDS = 2  # SEND_LEASE_SECONDS: a killed worker's deliveries are claimable again after this
REWAKE_EVERY = 1.0  # the reconciler's beat (production: 60 s for leases of 300 s)
DRAIN_TIMEOUT = 60  # seconds after the timeline for every campaign to finish
PURPOSES = 2
CHANNELS = ("portal", "one_click_http", "one_click_service", "written")
SCAN = b"%PDF-1.4\n% a scanned letter: please stop these messages\n"
_postal = itertools.count(1)


# --- Scenario programs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consent:
    """A patient's consent for one purpose: none, lasting (a year), expiring `expires_in` seconds after the
    run's start, or ending on an event (recorded, or not, by an ExpiryEvent action)."""

    kind: str  # none | lasting | expires | event
    expires_in: float = 0.0


@dataclass(frozen=True)
class CampaignPlan:
    purpose: int
    patients: tuple[int, ...]
    launch_at: float


@dataclass(frozen=True)
class Revoke:
    """A revocation through `channel` at `at`; or, with trigger "in_data", of whichever patient and purpose's
    message the SMTP server is taking at the first DATA after `at` (while that message's window holds its lock)."""

    at: float
    patient: int
    purpose: int
    channel: str
    trigger: str = "at"  # at | in_data


@dataclass(frozen=True)
class ExpiryEventAt:
    at: float
    patient: int
    purpose: int
    occurs_in: float  # seconds after the call: 0 for "it happened now"


@dataclass(frozen=True)
class Kill:
    """SIGKILL of a sender: the one in `slot` at `at` ("at"); or, at the first DATA after `at`, the one sending that
    message, before the server answers ("in_data") or just after its 250 ("after_250"): its window uncommitted."""

    at: float
    slot: int
    how: str = "at"  # at | in_data | after_250


@dataclass(frozen=True)
class Scenario:
    rate_limit: int  # SEND_RATE_LIMIT, messages per second across the workers; 0: none
    batch_size: int  # SEND_BATCH_SIZE
    window: float  # SEND_CHECK_WINDOW
    sink_delay: float  # seconds the SMTP server takes before its 250
    consents: tuple[tuple[Consent, ...], ...]  # per patient, per purpose
    campaigns: tuple[CampaignPlan, ...]
    actions: tuple  # Revoke | ExpiryEventAt | Kill, in time order


def _seconds(low: float, high: float):
    return st.floats(low, high).map(lambda value: round(value, 2))


@st.composite
def scenarios(draw) -> Scenario:
    consent = st.sampled_from(["none", "lasting", "lasting", "expires", "expires", "expires", "event", "event"]).flatmap(
        lambda kind: _seconds(0.1, 5.0).map(lambda s: Consent(kind, s)) if kind == "expires" else st.just(Consent(kind))
    )
    patients = draw(st.integers(8, 20))
    consents = tuple(tuple(draw(consent) for _ in range(PURPOSES)) for _ in range(patients))
    campaigns = tuple(
        CampaignPlan(
            purpose=draw(st.integers(0, PURPOSES - 1)),
            patients=tuple(sorted(draw(st.sets(st.integers(0, patients - 1), min_size=patients // 2, max_size=patients)))),
            launch_at=draw(_seconds(0.0, 1.0)),
        )
        for _ in range(draw(st.integers(2, 4)))
    )
    consented = [(p, q) for p in range(patients) for q in range(PURPOSES) if consents[p][q].kind != "none"]
    mailed = sorted({(p, c.purpose) for c in campaigns for p in c.patients if consents[p][c.purpose].kind != "none"})
    actions = []
    # Every channel at least once, then a few more of any; one-click on a patient a campaign mails.
    channels = list(CHANNELS) + draw(st.lists(st.sampled_from(CHANNELS), max_size=4))
    for channel in channels:
        pool = mailed if channel.startswith("one_click") and mailed else consented
        if pool:
            patient, purpose = draw(st.sampled_from(pool))
            trigger = draw(st.sampled_from(["at", "at", "in_data"]))
            at = draw(_seconds(0.1, 4.0))
            if channel.startswith("one_click"):  # a link the patient could have: after a launch that mails them
                at = max(at, min(c.launch_at for c in campaigns if c.purpose == purpose and patient in c.patients) + 0.1)
            actions.append(Revoke(round(at, 2), patient, purpose, channel, trigger))
    events = [(p, q) for p, q in consented if consents[p][q].kind == "event"]
    if events:
        for patient, purpose in draw(st.lists(st.sampled_from(events), unique=True, max_size=3)):
            actions.append(ExpiryEventAt(draw(_seconds(0.1, 3.5)), patient, purpose, draw(_seconds(0.0, 2.0))))
    for _ in range(draw(st.integers(1, 2))):
        how = draw(st.sampled_from(["at", "in_data", "after_250"]))
        # Armed early enough that messages are still flowing (a kill "in_data" fires at the next DATA).
        at = draw(_seconds(0.2, 3.0)) if how == "at" else draw(_seconds(0.1, 1.5))
        actions.append(Kill(at, draw(st.integers(0, SENDERS - 1)), how))
    return Scenario(
        rate_limit=draw(st.sampled_from([0, 15, 40])),
        batch_size=draw(st.sampled_from([3, 5, 8])),
        window=draw(st.sampled_from([0.25, 0.5, 1.0])),
        sink_delay=draw(st.sampled_from([0.01, 0.03, 0.06])),
        consents=consents,
        campaigns=campaigns,
        actions=tuple(sorted(actions, key=lambda action: action.at)),
    )


# --- Running one ----------------------------------------------------------------------------------------------


def _broker_forget() -> None:
    """Empty the queues and the unacknowledged set (a killed worker's task must not come back in a later example)."""
    from campaigns.tests.worker import QUEUES

    with celery_app.connection_for_write() as broker:
        channel = broker.default_channel
        for queue in QUEUES:
            channel.queue_purge(queue)
        channel.client.delete(channel.unacked_key, channel.unacked_index_key, channel.unacked_mutex_key)


@dataclass
class World:
    """One example's data: the patients, their authorizations by (patient index, purpose index), the campaigns."""

    purposes: list
    patients: list
    authorizations: dict
    campaign_ids: list


def _build(scenario: Scenario, staff: dict) -> tuple[World, list]:
    """Patients, the consents that do not depend on the run's start, approved campaigns over their segments.
    Returns the world and the expiring consents still to grant (they are granted just before the start)."""
    purposes = [purpose_make() for _ in range(PURPOSES)]
    patients = [patient_make(postal_code=f"H{next(_postal):06d}") for _ in scenario.consents]
    now = datetime.now(UTC)
    authorizations, expiring = {}, []
    for index, row in enumerate(scenario.consents):
        for purpose_index, consent in enumerate(row):
            grant = {"patient": patients[index], "purpose": purposes[purpose_index], "signed_at": now - timedelta(days=1)}
            if consent.kind == "lasting":
                authorizations[index, purpose_index] = authorization_grant(actor=None, expires_at=now + timedelta(days=365), **grant)
            elif consent.kind == "event":
                authorizations[index, purpose_index] = authorization_grant(
                    actor=None, expires_at=None, expiry_event="when you stop renting equipment from us", **grant
                )
            elif consent.kind == "expires":
                expiring.append(((index, purpose_index), consent.expires_in, grant))
    campaign_ids = []
    for plan in scenario.campaigns:
        segment = segment_save(
            actor=staff["marketer"],
            name=f"history {next(_postal)}",
            rules={"op": "and", "rules": [{"field": "postal_code", "in": [patients[i].postal_code for i in plan.patients]}]},
        )
        campaign = campaign_create_draft(
            actor=staff["marketer"], name=f"History {segment.pk}", purpose=purposes[plan.purpose], segment=segment,
            subject="News for you", body_text="Hello from Riverside Health.",
        )  # fmt: skip
        campaign_submit(actor=staff["marketer"], campaign_id=campaign.pk)
        campaign_approve(actor=staff["officer"], campaign_id=campaign.pk)
        campaign_ids.append(campaign.pk)
    return World(purposes, patients, authorizations, campaign_ids), expiring


def _in_thread(threads: list, recorder: Recorder, what: str, work) -> None:
    def run():
        try:
            work()
        except Exception as error:  # noqa: BLE001 - the checker reports it
            recorder.error(f"{what}: {error!r}")
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=what)
    thread.start()
    threads.append(thread)


def _one_click_path(world: World, sink, patient, purpose) -> str | None:
    """The unsubscribe URL the patient received for this purpose (its path), or else one of a delivery of theirs
    for it (the link in a message still on its way), or None when no campaign of that purpose was launched."""
    deliveries = list(
        Delivery.objects.filter(patient=patient, campaign__purpose=purpose, campaign__pk__in=world.campaign_ids)
        .order_by("id")
        .values_list("id", flat=True)
    )
    if not deliveries:
        return None
    for record in sink.records:
        if patient.email in record.recipients and record.list_unsubscribe:
            path = urlparse(record.list_unsubscribe.strip("<>")).path
            # The campaign's purpose: the link revokes the purpose of the delivery it names.
            from campaigns.sending.messages import unsubscribe_token_read

            named = unsubscribe_token_read(path.rstrip("/").rpartition("/")[2])
            if named in deliveries:
                return path
    return reverse("unsubscribe", kwargs={"token": unsubscribe_token(deliveries[0])})


def _delivery_of(world: World, patient, purpose, wait: float = 5.0):
    """A delivery of this patient for this purpose, waiting for the launch that makes it (the scenario puts a
    one-click after the launch of a campaign that mails the patient, but the launch runs in its own thread)."""
    deadline = time.monotonic() + wait
    while True:
        delivery = (
            Delivery.objects.filter(patient=patient, campaign__purpose=purpose, campaign__pk__in=world.campaign_ids)
            .order_by("id")
            .first()
        )
        if delivery is not None or time.monotonic() > deadline:
            return delivery
        time.sleep(0.02)


def _revoke(revoke: Revoke, world: World, recorder: Recorder, sink, staff: dict) -> None:
    patient, purpose = world.patients[revoke.patient], world.purposes[revoke.purpose]
    authorization = world.authorizations.get((revoke.patient, revoke.purpose))

    def ids(revocations) -> list[int]:
        return [revocation.authorization_id for revocation in revocations]

    if revoke.channel == "portal":
        def call():
            return ids(portal_authorization_revoke(patient_id=patient.pk, authorization_id=authorization.pk))
    elif revoke.channel == "written":
        def call():
            scan = SimpleUploadedFile("letter.pdf", SCAN, content_type="application/pdf")
            return ids(revocation_written_record(actor=staff["officer"], authorization_id=authorization.pk, scan=scan))
    elif revoke.channel == "one_click_service":
        delivery = _delivery_of(world, patient, purpose)
        if delivery is None:
            recorder.error(f"one-click for patient {patient.pk}: no delivery (the scenario should not ask)")
            return

        def call():
            return ids(delivery_unsubscribe(delivery_id=delivery.pk))
    else:
        _delivery_of(world, patient, purpose)  # waits for the launch
        path = _one_click_path(world, sink, patient, purpose)
        if path is None:
            recorder.error(f"one-click for patient {patient.pk}: no delivery (the scenario should not ask)")
            return

        def call():
            response = Client().post(path)  # RFC 8058: no cookies, no login, the signed token only
            if response.status_code != 200:
                raise AssertionError(f"POST {path} answered {response.status_code}")
            return []

    recorder.revocation(channel=revoke.channel, patient_id=patient.pk, purpose_id=purpose.pk, call=call)


def _revoke_in_flight(revoke: Revoke, record, world: World, recorder: Recorder, sink, staff: dict) -> None:
    """The revocation of whoever's message the server is taking (`record`), through `revoke.channel`."""
    from campaigns.sending.messages import message_id_for

    rows = Delivery.objects.filter(campaign_id__in=world.campaign_ids).values_list("id", "patient_id", "campaign__purpose_id")
    for pk, patient_id, purpose_id in rows:
        if message_id_for(pk) == record.message_id:
            patient = next(i for i, p in enumerate(world.patients) if p.pk == patient_id)
            purpose = next(i for i, q in enumerate(world.purposes) if q.pk == purpose_id)
            _revoke(Revoke(revoke.at, patient, purpose, revoke.channel, "in_data"), world, recorder, sink, staff)
            return
    recorder.error(f"no delivery of this run has the Message-ID {record.message_id!r}")


class DataTriggers:
    """One-shot actions armed for the next message the SMTP server takes (its on_data hook, called in the server's
    event loop while the sender waits for its 250: nothing here may touch the database)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._armed: list = []
        self.fired = 0

    def arm(self, action) -> None:
        with self._lock:
            self._armed.append(action)

    def __call__(self, record) -> None:
        with self._lock:
            armed, self._armed = self._armed, []
            self.fired += len(armed)
        for action in armed:
            action(record)


def _campaigns_done(world: World) -> bool:
    return not Campaign.objects.filter(pk__in=world.campaign_ids).exclude(status=Campaign.Status.SENT).exists()


def _run(scenario: Scenario, *, sink, log_dir, staff: dict, label: str):
    """Run one scenario against real workers; returns (history, senders' output, kills, reconciler runs)."""
    sink.handler.delay = scenario.sink_delay
    sink.handler.clear()
    _broker_forget()
    recorder = Recorder()
    env = {
        "SEND_BATCH_SIZE": str(scenario.batch_size),
        "SEND_LEASE_SECONDS": str(LEASE_SECONDS),
        "SEND_CHECK_WINDOW": str(scenario.window),
        "SEND_RATE_LIMIT": str(scenario.rate_limit),
        "SEND_RATE_LIMIT_REDIS_URL": settings.CELERY_BROKER_URL,  # this suite's own Redis database
        "HIPAAMAIL_TRANSPORT": "smtp",  # production's transport: one SMTP session per batch
    }
    senders = Senders(sink, log_dir, env=env, prefix=label)
    phases = {}
    began = time.monotonic()
    senders.start_all(SENDERS)  # they boot while the data is made
    try:
        world, expiring = _build(scenario, staff)
        phases["build"] = time.monotonic() - began
        senders.wait_ready()
        phases["boot"] = time.monotonic() - began
        # The run's start, a little ahead so that the expiring consents are granted before it.
        start = time.time() + 0.2 + 0.02 * len(expiring)
        for key, expires_in, grant in expiring:
            world.authorizations[key] = authorization_grant(
                actor=None, expires_at=datetime.fromtimestamp(start + expires_in, UTC), **grant
            )
        # Launches (by campaign id: two plans may be equal) and the actions, in time order.
        timeline = [(plan.launch_at, pk) for plan, pk in zip(scenario.campaigns, world.campaign_ids)]
        timeline += [(action.at, action) for action in scenario.actions]
        timeline.sort(key=lambda item: item[0])
        threads: list[threading.Thread] = []
        triggers = DataTriggers()
        sink.handler.on_data = triggers
        with Reconciler(recorder, every=REWAKE_EVERY) as reconciler:
            for offset, (when, action) in enumerate(timeline):
                time.sleep(max(0.0, start + when - time.time()))
                if isinstance(action, int):
                    campaign_id = action
                    _in_thread(threads, recorder, f"launch {campaign_id}",
                               lambda campaign_id=campaign_id: campaign_launch(actor=None, campaign_id=campaign_id))  # fmt: skip
                elif isinstance(action, Kill) and action.how == "at":
                    senders.kill(action.slot)
                elif isinstance(action, Kill) and action.how == "in_data":
                    triggers.arm(lambda record: senders.kill_sender_of(record, "in_data"))
                elif isinstance(action, Kill):  # just after the server's 250, before the window commits
                    triggers.arm(
                        lambda record: asyncio.get_running_loop().call_later(
                            scenario.sink_delay + 0.002, senders.kill_sender_of, record, "after_250"
                        )
                    )
                elif isinstance(action, Revoke) and action.trigger == "in_data":
                    triggers.arm(
                        lambda record, action=action: _in_thread(
                            threads, recorder, f"revoke in flight {action.channel}",
                            lambda: _revoke_in_flight(action, record, world, recorder, sink, staff),
                        )
                    )  # fmt: skip
                elif isinstance(action, Revoke):
                    _in_thread(threads, recorder, f"revoke {offset}",
                               lambda action=action: _revoke(action, world, recorder, sink, staff))  # fmt: skip
                elif isinstance(action, ExpiryEventAt):
                    authorization = world.authorizations[action.patient, action.purpose]
                    _in_thread(threads, recorder, f"expiry event {offset}",
                               lambda action=action, pk=authorization.pk: recorder.expiry_event(
                                   authorization_id=pk,
                                   occurred_at=datetime.now(UTC) + timedelta(seconds=action.occurs_in)))  # fmt: skip
            sink.handler.on_data = None  # what was armed and did not fire is dropped
            joined = 0
            while joined < len(threads):  # a trigger that was firing as it was disarmed may still add one
                thread = threads[joined]
                joined += 1
                thread.join(DRAIN_TIMEOUT)
                if thread.is_alive():
                    recorder.error(f"{thread.name} still running after {DRAIN_TIMEOUT} s (a lock never released?)")
            phases["timeline"] = time.monotonic() - began
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while not _campaigns_done(world) and time.monotonic() < deadline:
                time.sleep(0.1)
            phases["drain"] = time.monotonic() - began
        time.sleep(scenario.sink_delay + 0.05)  # nothing should arrive now; if it does, it is in the history
        history = history_collect(
            window=scenario.window,
            campaign_ids=world.campaign_ids,
            patient_ids=[patient.pk for patient in world.patients],
            records=sink.records,
            recorder=recorder,
        )
        return history, senders, reconciler.runs, triggers.fired, phases
    finally:
        sink.handler.on_data = None
        senders.stop_all()
        _broker_forget()
        phases["stop"] = time.monotonic() - began


# --- The test -------------------------------------------------------------------------------------------------


def test_r_send_covered_r_revoke_anytime_r_send_evidence_random_concurrent_histories_are_clean(tmp_path, capsys, settings):
    """R-SEND-COVERED, R-REVOKE-ANYTIME, R-SEND-EVIDENCE: in every generated run — launches, revocations on every
    channel, expiries and expiry events mid-batch, senders killed and replaced, throttling — the history shows no
    message after its revocation committed or its authorization expired, every delivery terminal, every campaign
    finished, each sent delivery received and duplicates only where flagged, and per-message evidence within the
    check-to-send window (campaigns.tests.history.history_check)."""
    settings.MEDIA_ROOT = str(tmp_path / "media")  # the written revocations' scans
    staff = {"marketer": staff_make(role="marketer"), "officer": staff_make(role="compliance officer")}
    failures: list[str] = []
    totals: dict[str, int] = {}
    runs: list[str] = []

    def say(text: str) -> None:
        with capsys.disabled():
            print(text, flush=True)

    # The first request imports the URLconf and renders its first templates (seconds on a busy machine): not
    # inside a revocation's brackets.
    Client().get(reverse("unsubscribe", kwargs={"token": "warm-up"}))
    say(f"\nhistory checker: HISTORY_SEED={SEED} HISTORY_EXAMPLES={EXAMPLES} senders={SENDERS} "
        f"lease={LEASE_SECONDS}s reconciler every {REWAKE_EVERY}s")  # fmt: skip
    started = time.monotonic()

    with smtp_sink(concurrent=True) as sink:

        @seed(SEED)
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=False,
            database=None,  # the seed is the way to reproduce; a saved example would replay a timing it cannot
            phases=[Phase.explicit, Phase.generate],  # no shrinking: a timing does not shrink
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(scenarios())
        def run_one(scenario: Scenario) -> None:
            assume(not failures)  # stop at the first failing example (the rest are skipped)
            number = len(runs) + 1
            began = time.monotonic()
            history, senders, reconciler_runs, fired, phases = _run(scenario, sink=sink, log_dir=tmp_path, staff=staff, label=f"h{number}")
            violations = history_check(history)
            figures = history_figures(history) | {
                "kills": len(senders.kills),
                "kills_in_flight": sum(how != "at" for how in senders.kills),
                "triggers_fired": fired,
                "reconciler_runs": reconciler_runs,
            }
            for key, value in figures.items():
                totals[key] = max(totals.get(key, 0), value) if key.endswith("_max") else totals.get(key, 0) + value
            line = (
                f"example {number}: {time.monotonic() - began:.1f}s rate={scenario.rate_limit} batch={scenario.batch_size} "
                f"window={scenario.window} delay={scenario.sink_delay} "
                + " ".join(f"{key}={value}" for key, value in figures.items())
                + " phases=" + ",".join(f"{key}:{value:.1f}" for key, value in phases.items())
                + (f" VIOLATIONS={len(violations)}" if violations else "")
            )
            runs.append(line)
            say(line)
            if violations:
                report = (
                    f"HISTORY_SEED={SEED}, example {number}: {scenario!r}\n{history_report(history, violations)}\n"
                    f"senders' output:\n{senders.output()}"
                )
                failures.append(report)
                say(report)

        run_one()

    say(f"history checker: {len(runs)} examples in {time.monotonic() - started:.0f}s, seed {SEED}; totals: "
        + " ".join(f"{key}={value}" for key, value in totals.items()))  # fmt: skip
    assert failures == [], f"HISTORY_SEED={SEED}: the history checker found violations:\n" + "\n\n".join(failures)
    assert len(runs) >= min(EXAMPLES, 3), f"only {len(runs)} examples ran"
    # The runs exercised what they are for (summed over the examples; the first example is Hypothesis's simplest).
    if len(runs) >= 6:
        assert totals["kills"] >= 1 and totals["revocations"] >= 1, totals
        assert totals["expiry_events"] + totals["blocked_expired"] >= 1, totals
