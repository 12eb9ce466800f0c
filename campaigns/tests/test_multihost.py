"""Many machines (issue 15, item 4; docs/scaling.md): three worker hosts against one PostgreSQL and one Redis send a
50,000-recipient campaign; one host is lost mid-send; the recorded history is clean.

- The hosts (campaigns.tests.hosts): each a network namespace of its own with one real `celery worker` process group
  (prefork, CONCURRENCY children), reaching PostgreSQL and Redis on this machine through its veth pair; where
  namespaces are unavailable, plain process groups (the test prints which ran: "multihost: ... ran as ...").
- The campaign: 50,000 covered patients (bench/send_campaign.py's covered_patients_make: the real import, then one
  authorization each), launched with SEND_DISPATCHERS waking every sender process of every host.
- Mid-send, REVOKED patients revoke (the revocation service, each call bracketed by the wall clock), so that
  "none sent without coverage" is tested against authorizations that end while the campaign sends.
- When KILL_AT messages have arrived and host 2 is sending, its whole process group is SIGKILLed: the lost host's
  open windows roll back, its claims stay leased; the reconciler (campaigns.tasks.campaign_rewake_task on a beat,
  campaigns.tests.history.Reconciler) wakes the others, which claim those deliveries again once the lease expires.
- The SMTP sink (campaigns.tests.smtp_server) records what it received with times; campaigns.tests.history's
  history_check then states the verdict: every delivery terminal, the campaign finished, no message after its
  revocation or without coverage, no message twice unless its delivery was in flight and is flagged
  possible_duplicate (R-SEND-COVERED, R-REVOKE-ANYTIME, R-SEND-EVIDENCE).

Marked `multihost` (make test-multihost; about three minutes on a 2-core machine). PostgreSQL and Redis required.
"""
import logging
import random
import threading
import time
from collections import Counter

import pytest
from celery import current_app as celery_app
from django.db import connection

from bench.send_campaign import covered_patients_make
from campaigns.models import Campaign, Delivery
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.history import (
    Reconciler,
    Recorder,
    history_check,
    history_collect,
    history_figures,
    history_report,
)
from campaigns.tests.hosts import Hosts, namespaces_available
from campaigns.tests.smtp_server import smtp_sink
from campaigns.tests.worker import QUEUES
from conftest import requires_postgresql, requires_redis
from consent.models import Patient
from consent.services.authorizations import authorization_revoke

pytestmark = [
    pytest.mark.multihost,
    requires_postgresql,
    requires_redis,
    pytest.mark.django_db(transaction=True),
]

RECIPIENTS = 50_000
HOSTS = 3
CONCURRENCY = 2  # pool children per host
BATCH_SIZE = 200
LEASE_SECONDS = 10  # a lost host's claims come back this long after it claimed them
REWAKE_EVERY = 2.0  # the reconciler's period here (beat: 60 s, for leases of 300 s)
WINDOW = 1.0  # SEND_CHECK_WINDOW, the default
REVOKE_AT = 8_000  # messages received when the revocations start
REVOKED = 300  # patients who revoke while the campaign sends
KILL_AT = 20_000  # messages received when host 2 is lost
SEND_TIMEOUT = 400  # seconds for the whole campaign


def _broker_forget() -> None:
    with celery_app.connection_for_write() as broker:
        channel = broker.default_channel
        for queue in QUEUES:
            channel.queue_purge(queue)
        channel.client.delete(channel.unacked_key, channel.unacked_index_key, channel.unacked_mutex_key)


def _wait(condition, what: str, timeout: float, hosts: Hosts):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}\n{hosts.output()}")
        time.sleep(0.1)


def test_r_send_covered_r_revoke_anytime_three_hosts_send_50000_one_is_lost_and_the_history_is_clean(
    tmp_path, capsys, settings
):
    # aiosmtpd narrates every SMTP command at INFO: 50,000 messages' worth would cost the sink most of its time.
    mail_log = logging.getLogger("mail.log")
    mail_log_level = mail_log.level
    mail_log.setLevel(logging.WARNING)
    try:
        _run(tmp_path, capsys, settings)
    finally:
        mail_log.setLevel(mail_log_level)


def _run(tmp_path, capsys, settings) -> None:
    use_namespaces, why_not = namespaces_available()
    began = time.monotonic()
    phases = {}
    settings.HIPAAMAIL_SEND_DISPATCHERS = HOSTS * CONCURRENCY  # every sender process from the start
    purpose = covered_patients_make(RECIPIENTS)
    campaign = campaign_approved_make(purpose=purpose)
    patient_ids = list(Patient.objects.order_by("id").values_list("id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # planner statistics for tables this size, as autovacuum would have them
    phases["data"] = time.monotonic() - began
    with capsys.disabled():
        print(f"\nmultihost: {RECIPIENTS:,} covered patients and the campaign made in {phases['data']:.0f} s")
    _broker_forget()
    recorder = Recorder()
    hosts = Hosts(HOSTS, log_dir=tmp_path, broker_url=celery_app.conf.broker_url, use_namespaces=use_namespaces)
    env = {
        "SEND_BATCH_SIZE": str(BATCH_SIZE),
        "SEND_LEASE_SECONDS": str(LEASE_SECONDS),
        "SEND_CHECK_WINDOW": str(WINDOW),
        "SEND_RATE_LIMIT": "0",
        "HIPAAMAIL_TRANSPORT": "smtp",  # production's transport: one SMTP session per batch
    }
    lost = hosts.hosts[1]
    with smtp_sink(host="0.0.0.0" if use_namespaces else "127.0.0.1", keep_raw=False) as sink:
        try:
            hosts.start(sink, env=env, concurrency=CONCURRENCY)
            hosts.wait_ready()
            phases["boot"] = time.monotonic() - began
            with Reconciler(recorder, every=REWAKE_EVERY) as reconciler:
                campaign_launch(actor=None, campaign_id=campaign.pk)  # wakes SEND_DISPATCHERS senders on commit
                phases["launch"] = time.monotonic() - began

                # Revocations while it sends, from patients whose messages are still queued.
                _wait(lambda: len(sink.records) >= REVOKE_AT, f"{REVOKE_AT} messages", 180, hosts)
                queued = list(
                    Delivery.objects.filter(campaign=campaign, status=Delivery.Status.QUEUED)
                    .order_by("-id").values_list("patient_id", flat=True)[: REVOKED * 4]
                )  # fmt: skip
                revoking = random.Random(15).sample(queued, REVOKED)

                def revoke_all():
                    from django.db import connection as thread_connection

                    try:
                        for patient_id in revoking:
                            recorder.revocation(
                                channel="portal", patient_id=patient_id, purpose_id=purpose.pk,
                                call=lambda patient_id=patient_id: [
                                    r.authorization_id for r in authorization_revoke(
                                        actor=None, patient_id=patient_id, purpose_id=purpose.pk, channel="portal"
                                    )
                                ],
                            )  # fmt: skip
                    finally:
                        thread_connection.close()

                revoker = threading.Thread(target=revoke_all, name="revocations")
                revoker.start()

                # Host 2 is lost while it is sending (its address was seen by the sink in the last half second).
                def host_two_sending():
                    if len(sink.records) < KILL_AT:
                        return False
                    if not use_namespaces:
                        return True
                    now = time.time()
                    return any(r.peer[0] == lost.address and now - r.received_at < 0.5 for r in sink.records[-2000:])

                _wait(host_two_sending, f"{KILL_AT} messages with host 2 sending", 180, hosts)
                hosts.kill(lost)
                phases["kill"] = time.monotonic() - began
                received_at_kill = len(sink.records)
                revoker.join(120)
                assert not revoker.is_alive(), "the revocations did not finish"

                def finished():
                    status = Campaign.objects.values_list("status", flat=True).get(pk=campaign.pk)
                    return status == Campaign.Status.SENT

                _wait(finished, "the campaign to finish", SEND_TIMEOUT, hosts)
                phases["sent"] = time.monotonic() - began
            time.sleep(0.5)  # nothing should arrive now; if it does, it is in the history
            records = sink.records
        finally:
            hosts.stop()
            _broker_forget()

    history = history_collect(
        window=WINDOW, campaign_ids=[campaign.pk], patient_ids=patient_ids, records=records, recorder=recorder
    )
    phases["collect"] = time.monotonic() - began
    violations = history_check(history)
    phases["check"] = time.monotonic() - began
    figures = history_figures(history)
    by_host = Counter(record.peer[0] for record in records)
    after_kill = [r for r in records if lost.killed_at is not None and r.received_at > lost.killed_at + 0.01]
    reclaimed = Delivery.objects.filter(campaign=campaign, attempts__gte=2).count()
    flagged = Delivery.objects.filter(campaign=campaign, possible_duplicate=True).count()
    blocked_revoked = Delivery.objects.filter(campaign=campaign, status="blocked", block_reason="revoked").count()
    with capsys.disabled():
        print(
            f"\nmultihost: {HOSTS} hosts ran as {hosts.mode}{f' ({why_not})' if why_not else ''}; "
            f"{len(records):,} messages received ({dict(by_host)}), {received_at_kill:,} when host 2 was lost; "
            f"{reclaimed} deliveries claimed again after the lease, {flagged} flagged possible_duplicate, "
            f"{blocked_revoked} blocked as revoked, {len(recorder.revocations)} revocations, "
            f"{reconciler.runs} reconciler runs; figures {figures}; "
            f"phases {', '.join(f'{k} {v:.0f}s' for k, v in phases.items())}"
        )

    assert violations == [], history_report(history, violations)
    assert Delivery.objects.filter(campaign=campaign).count() == RECIPIENTS
    assert set(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) <= {"sent", "blocked"}
    # The loss landed mid-send: what host 2 had claimed came back through the lease and went out from the others,
    # flagged because it may have reached the server before the host died.
    assert reclaimed >= 1 and flagged >= 1
    if use_namespaces:
        assert set(by_host) == {host.address for host in hosts.hosts}  # all three hosts sent
        assert not [r for r in after_kill if r.peer[0] == lost.address]  # a lost host sends nothing more
    # The revocations mattered: messages still queued when their patient revoked were blocked, none sent.
    assert len([call for call in recorder.revocations if call.revoked]) == REVOKED
    assert blocked_revoked >= 1
