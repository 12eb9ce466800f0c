"""Revocation latency benchmark (issue 11, item 3): revoking while a throttled campaign sends to the same patients.

    .venv/bin/python bench/revocation_latency.py [--rate 40] [--per-channel 100] [--sink-delay 0]

Creates (dropping it first) a database of its own (`--database`, default `hipaamail_bench_revoke`), imports
synthetic patients with the import service (COPY), grants each a marketing authorization, creates, approves
and launches a campaign to all of them (deliveries queued; no Celery wake: this script starts the senders).
Then, in the same run:

- baseline: `--per-channel` revocations on each channel, three channels at once (one thread each), with no
  campaign sending;
- send: the same while `--workers` forked processes run the one sender (`delivery_dispatch_batch`) with the
  rate limit `SEND_RATE_LIMIT=--rate` shared through Redis, batches of `--batch-size`, the smtp transport and
  PostgreSQL, into an SMTP server that records when each message arrived (bench/smtp_recorder.py, its own
  process). The revoked patients are the campaign's: half are aimed at the window in flight (the next
  deliveries in claim order, revoked just after the wall-clock second at which the rate limiter lets a batch
  claim), half are any queued patient at a random moment.

The channels, each as a patient or staff member uses it:

- portal: POST to the portal's "Stop these messages" page (`portal:revoke`) with a signed-in patient session,
  through Django's test client (the whole middleware stack, session saved), then the page it redirects to;
- one-click: POST `List-Unsubscribe=One-Click` to the message's unsubscribe URL (RFC 8058);
- written: `consent.services.written.revocation_written_record` by a staff member, with a scanned letter.

Measured per revocation, on this process's `time.time()` (the recorder's clock is the same machine's):
commit latency, from the call (the request, or the service call) to the revocation's commit (an on-commit
hook registered first inside the revocation's transaction, so it runs before the audit sealer); the page
response time (portal: the POST and the page it redirects to; one-click: the POST); the time from entering the
locking service to the commit (mostly the wait for a window in flight). And for every revoked patient whether
their message reached the SMTP server after the revocation committed (must never happen).

Exits 1 when a target fails: commit p99 under `--commit-p99` (0.5 s) while sending, every page under
`--page-max` (1 s) while sending, and no message after a revocation's commit.
"""
import argparse
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = ("portal", "one-click", "written")
sys.path.insert(0, str(ROOT))
from bench.send_campaign import covered_patients_make, free_port, recreate_database

SCAN = b"%PDF-1.4\n% a scanned letter: please stop sending me marketing messages\n%%EOF\n"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


class Recorder:
    """bench/smtp_recorder.py in its own process: when each message arrived, per recipient."""

    def __init__(self, delay: float):
        self.port = free_port()
        self.path = Path(tempfile.mkstemp(prefix="smtp-recorder-", suffix=".log")[1])
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "smtp_recorder.py"), "--port", str(self.port),
             "--out", str(self.path), "--delay", str(delay)],
            stdout=subprocess.PIPE, text=True,
        )
        if self.process.stdout.readline().strip() != "ready":
            sys.exit("the SMTP recorder did not start")

    def arrivals(self) -> dict[str, list[float]]:
        arrived: dict[str, list[float]] = defaultdict(list)
        for line in self.path.read_text().splitlines():
            at, recipient = line.split(" ", 1)
            arrived[recipient].append(float(at))
        return arrived

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _sender(campaign_id: int, stop, results) -> None:
    """A worker process: the one sender, batch after batch, until told to stop (or nothing is left)."""
    from django.db import connection

    from campaigns.sending.dispatch import TransientSendError, delivery_dispatch_batch
    connection.close()  # a fresh connection per process
    claimed = 0
    while not stop.is_set():
        try:
            n = delivery_dispatch_batch(campaign_id=campaign_id)
        except TransientSendError:
            time.sleep(0.05)
            continue
        if not n:
            break
        claimed += n
    connection.close()
    results.put(claimed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4000)
    parser.add_argument("--per-channel", type=int, default=100, help="revocations per channel and phase")
    parser.add_argument("--rate", type=int, default=40, help="SEND_RATE_LIMIT, messages per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--window", type=float, default=1.0, help="SEND_CHECK_WINDOW (default: the setting's)")
    parser.add_argument("--sink-delay", type=float, default=0.0, help="seconds the SMTP server takes per message")
    parser.add_argument("--aimed", type=float, default=0.5, help="share of revocations aimed at the window in flight")
    parser.add_argument("--commit-p99", type=float, default=0.5, help="target, seconds")
    parser.add_argument("--page-max", type=float, default=1.0, help="target, seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--database", default="hipaamail_bench_revoke")
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10"),
        help="the rate limiter's shared counter (and the Celery broker URL setting)",
    )
    args = parser.parse_args()
    if not 0 < args.window <= 5:
        parser.error("--window must be more than 0 and at most 5 seconds (the setting's range)")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    needed = 2 * len(CHANNELS) * args.per_channel
    if args.patients < needed + 10 * args.rate:
        parser.error(f"--patients must be at least {needed + 10 * args.rate} for these revocations and rate")

    os.environ["DATABASE_URL"] = recreate_database(args.admin_url, args.database)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hipaamail.settings.test"
    os.environ["CELERY_BROKER_URL"] = args.redis_url
    import logging

    logging.disable(logging.WARNING)
    import django

    django.setup()
    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client
    from django.urls import reverse

    import consent.services
    import consent.services.written
    from accounts.tests.factories import staff_make
    from campaigns.models import Delivery
    from campaigns.sending.messages import unsubscribe_token
    from campaigns.sending.transport import SmtpTransport, rate_limiter, transport_for_settings
    from campaigns.services.launch import campaign_launch
    from campaigns.services.lifecycle import campaign_approve, campaign_create, campaign_submit
    from consent.models import Authorization, Patient
    from consent.services.written import revocation_written_record

    call_command("migrate", verbosity=0)
    media = tempfile.TemporaryDirectory(prefix="bench-revoke-media-")  # the written revocations' scans
    settings.MEDIA_ROOT = media.name
    settings.HIPAAMAIL_TRANSPORT = "smtp"
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.HIPAAMAIL_SEND_BATCH_SIZE = args.batch_size
    settings.HIPAAMAIL_SEND_CHECK_WINDOW = args.window
    settings.HIPAAMAIL_RATE_LIMIT = args.rate
    settings.HIPAAMAIL_RATE_LIMIT_REDIS_URL = args.redis_url
    assert connection.vendor == "postgresql", connection.vendor

    started = time.time()
    purpose = covered_patients_make(args.patients)
    author, approver = staff_make(role="marketer"), staff_make(role="compliance officer")
    clerk = staff_make(role="compliance officer")  # records the written revocations
    campaign = campaign_create(
        actor=author, name="Flu season", purpose=purpose, subject="Flu vaccination: longer hours this autumn",
        body_text="Dear patient,\n\nOur clinics offer longer opening hours for flu vaccination this autumn.\n\n"
        "Your care team",
    )
    campaign_submit(actor=author, campaign_id=campaign.pk)
    campaign_approve(actor=approver, campaign_id=campaign.pk)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):  # the senders are this script's processes
        campaign_launch(actor=approver, campaign_id=campaign.pk)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    deliveries = list(Delivery.objects.filter(campaign=campaign).order_by("id").values_list("id", "patient_id"))
    assert len(deliveries) == args.patients
    delivery_of = {patient_id: delivery_id for delivery_id, patient_id in deliveries}
    claim_order = [patient_id for _, patient_id in deliveries]  # the sender claims by delivery id
    email_of = {pk: email.lower() for pk, email in ((p.pk, p.email) for p in Patient.objects.all())}
    authorization_of = dict(Authorization.objects.filter(purpose=purpose).values_list("patient_id", "id"))
    # The baseline revokes the patients the senders reach last (and never reach before they stop).
    baseline_patients = claim_order[-len(CHANNELS) * args.per_channel :]
    send_candidates = claim_order[: -len(CHANNELS) * args.per_channel]
    reverse("unsubscribe", kwargs={"token": "warm"})  # the URLconf loaded once, as in a long-lived process
    redis_client = rate_limiter()._redis
    assert redis_client is not None, "the rate limiter must share its counter through Redis"
    connection.close()
    print(f"setup: {args.patients:,} covered patients, campaign launched, in {time.time() - started:.1f}s; "
          f"seed {seed}")

    # --- Instrumentation: when each revocation commits ------------------------------------------------
    local = threading.local()  # the revocation in progress on this thread: its record dict
    real_revoke_locked = consent.services.authorizations.authorizations_revoke_locked

    def revoke_locked_timed(**kwargs):
        record = local.record
        record["entered"] = time.time()
        # Registered before the service writes anything, so it runs first after the commit (before the audit
        # sealer's on-commit seal).
        transaction.on_commit(lambda: record.__setitem__("committed", time.time()))
        return real_revoke_locked(**kwargs)

    patches = [
        mock.patch("consent.services.authorizations.authorizations_revoke_locked", revoke_locked_timed),
        mock.patch("consent.services.written.authorizations_revoke_locked", revoke_locked_timed),
    ]

    # --- The three channels ----------------------------------------------------------------------------
    def prepare(channel: str, patient_id: int):
        """What the patient (or clerk) has in hand before acting: not timed."""
        if channel == "portal":
            client = Client()
            session = client.session
            session["portal_patient_id"] = patient_id  # consent.portal_session: the emailed code was typed back
            session["portal_last_seen"] = time.time()
            session.save()
            return client, reverse("portal:revoke", kwargs={"authorization_id": authorization_of[patient_id]})
        if channel == "one-click":
            return Client(), reverse("unsubscribe", kwargs={"token": unsubscribe_token(delivery_of[patient_id])})
        return None, authorization_of[patient_id]

    def act(channel: str, prepared, record: dict) -> None:
        client, target = prepared
        if channel == "portal":
            response = client.post(target, {})
            assert response.status_code == 302, response.status_code
            page = client.get(response["Location"])
            assert page.status_code == 200 and b"Done." in page.content, page.status_code
        elif channel == "one-click":
            response = client.post(
                target, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
            )
            assert response.status_code == 200, response.status_code
        else:
            revocation_written_record(actor=clerk, authorization_id=target, scan=ContentFile(SCAN, name="letter.pdf"))
        record["answered"] = time.time()

    # --- One phase: three revoking threads, one per channel ----------------------------------------------
    def run_phase(phase: str, pool: list[int], sending: bool) -> list[dict]:
        rng = random.Random(f"{seed}-{phase}")
        records: list[dict] = []
        taken: set[int] = set()
        lock = threading.Lock()
        errors: list[BaseException] = []
        queue_front = list(pool)  # in claim order

        def pick(aimed: bool) -> int:
            with lock:
                free = [pid for pid in queue_front if pid not in taken]
                if aimed:
                    # The next deliveries in claim order that are still queued: those the batch in flight, or
                    # the next one, holds or will hold FOR SHARE.
                    queued = set(
                        Delivery.objects.filter(
                            campaign=campaign, status=Delivery.Status.QUEUED, patient_id__in=free[: 20 * args.rate]
                        ).values_list("patient_id", flat=True)
                    )
                    ahead = [pid for pid in free if pid in queued][: args.rate]
                    patient_id = rng.choice(ahead or free)
                else:
                    patient_id = rng.choice(free[: len(free) // 2 + 1] if sending else free)
                taken.add(patient_id)
                return patient_id

        def revoker(channel: str) -> None:
            try:
                for _ in range(args.per_channel):
                    aimed = sending and rng.random() < args.aimed
                    if aimed:
                        # Just before the next wall-clock second: the rate limiter grants that second's tokens
                        # then, and a batch claims and opens its window.
                        time.sleep(max(0.0, 1 - time.time() % 1 - 0.08))
                    else:
                        time.sleep(rng.uniform(0.0, 0.3))
                    patient_id = pick(aimed)
                    prepared = prepare(channel, patient_id)
                    if aimed:
                        time.sleep(max(0.0, 1 - time.time() % 1) + rng.uniform(0.0, 0.04))
                    record = {"phase": phase, "channel": channel, "patient_id": patient_id, "aimed": aimed}
                    local.record = record
                    record["called"] = time.time()
                    act(channel, prepared, record)
                    assert "committed" in record, "the revocation did not commit"
                    with lock:
                        records.append(record)
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=revoker, args=(channel,)) for channel in CHANNELS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return records

    # --- Baseline: no campaign sending ---------------------------------------------------------------------
    for patch in patches:
        patch.start()
    try:
        baseline = run_phase("baseline", baseline_patients, sending=False)
    finally:
        for patch in patches:
            patch.stop()
    connection.close()

    # --- Send: the throttled campaign to the same patients ----------------------------------------------
    recorder = Recorder(args.sink_delay)
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", recorder.port
    assert isinstance(transport_for_settings(), SmtpTransport)
    for key in redis_client.scan_iter("hipaamail:send-rate:*"):
        redis_client.delete(key)  # this database's own counters only (db of --redis-url)
    context = multiprocessing.get_context("fork")
    stop, results = context.Event(), context.Queue()
    senders = [context.Process(target=_sender, args=(campaign.pk, stop, results)) for _ in range(args.workers)]
    send_started = time.time()
    for sender in senders:
        sender.start()
    time.sleep(2.0)  # the senders reach their pace first
    for patch in patches:
        patch.start()
    try:
        during = run_phase("send", send_candidates, sending=True)
    finally:
        for patch in patches:
            patch.stop()
        stop.set()
        claimed = sum(results.get() for _ in senders)
        for sender in senders:
            sender.join()
        send_seconds = time.time() - send_started
        time.sleep(0.2)
        recorder.stop()
    arrivals = recorder.arrivals()
    recorder.remove()
    media.cleanup()

    # --- What happened to the revoked patients' messages ---------------------------------------------------
    status_of = dict(
        Delivery.objects.filter(campaign=campaign, patient_id__in=[r["patient_id"] for r in during]).values_list(
            "patient_id", "status"
        )
    )
    windows = list(
        Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT)
        .values_list("checked_at", "sent_at")
    )
    by_window: dict = defaultdict(list)
    for checked_at, sent_at in windows:
        by_window[checked_at].append((sent_at - checked_at).total_seconds())
    window_lengths = [max(gaps) for gaps in by_window.values()]
    sent_total = len(windows)
    received_total = sum(len(v) for v in arrivals.values())
    overtaken, duplicates = [], []
    outcome = defaultdict(int)
    for record in during:
        times = arrivals.get(email_of[record["patient_id"]], [])
        if len(times) > 1:
            duplicates.append(record["patient_id"])
        late = [at - record["committed"] for at in times if at > record["committed"]]
        if late:
            overtaken.append((record["channel"], record["patient_id"], max(late)))
        if not times:
            outcome[f"not sent ({status_of.get(record['patient_id'])})"] += 1
        elif times[0] < record["called"]:
            outcome["sent before the revocation was asked"] += 1
        elif times[0] <= record["committed"]:
            outcome["sent while the revocation waited (window in flight)"] += 1
        else:
            outcome["SENT AFTER THE REVOCATION COMMITTED"] += 1

    # --- Figures -----------------------------------------------------------------------------------------
    print(f"send: {args.workers} sender processes, SEND_RATE_LIMIT={args.rate}/s (Redis), batches of "
          f"{args.batch_size}, SEND_CHECK_WINDOW={args.window:g}s, SMTP server delay {args.sink_delay * 1000:g} ms/message; "
          f"{claimed:,} claimed, {sent_total:,} sent, {received_total:,} received in {send_seconds:.1f}s "
          f"({sent_total / send_seconds:.1f} msgs/s)")
    if window_lengths:
        w = summary(window_lengths)
        print(f"windows while revoking: {len(window_lengths)}, {sent_total / len(window_lengths):.1f} messages each; "
              f"check -> last message accepted p50 {ms(w['p50'])} ms, p99 {ms(w['p99'])} ms, max {ms(w['max'])} ms")
    print()
    header = f"{'phase':<9} {'channel':<10} {'n':>4} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
    results_by = defaultdict(dict)
    for title, key in (
        ("commit latency (call -> commit), ms", "commit"),
        ("page response (portal: POST + the page it redirects to; one-click: POST), ms", "page"),
        ("locking service entered -> commit (the wait for a window in flight), ms", "wait"),
    ):
        print(title)
        print(header)
        for phase, records in (("baseline", baseline), ("send", during)):
            for channel in (*CHANNELS, "all"):
                chosen = [r for r in records if channel == "all" or r["channel"] == channel]
                if key == "page":
                    chosen = [r for r in chosen if r["channel"] != "written"]
                    if channel == "written":
                        continue
                values = [
                    {"commit": r["committed"] - r["called"], "page": r["answered"] - r["called"],
                     "wait": r["committed"] - r["entered"]}[key]
                    for r in chosen
                ]
                s = summary(values)
                results_by[(key, phase)][channel] = s
                print(f"{phase:<9} {channel:<10} {s['n']:>4} {ms(s['p50']):>8} {ms(s['p95']):>8} "
                      f"{ms(s['p99']):>8} {ms(s['max']):>8}")
        base, load = results_by[(key, "baseline")]["all"], results_by[(key, "send")]["all"]
        print(f"ratio send / baseline (all): p50 {load['p50'] / base['p50']:.2f}, p99 {load['p99'] / base['p99']:.2f}")
        print()
    aimed = [r for r in during if r["aimed"]]
    print(f"revoked while sending: {len(during)} ({len(aimed)} aimed at the window in flight); their messages:")
    for what, count in sorted(outcome.items()):
        print(f"  {what}: {count}")
    print(f"messages received after their patient's revocation committed: {len(overtaken)}"
          + (f" {overtaken[:10]}" if overtaken else ""))
    if duplicates:
        print(f"patients who received the message more than once: {len(duplicates)}")

    commit_p99 = results_by[("commit", "send")]["all"]["p99"]
    page_max = results_by[("page", "send")]["all"]["max"]
    checks = [
        (f"commit p99 while sending {ms(commit_p99)} ms < {ms(args.commit_p99)} ms", commit_p99 < args.commit_p99),
        (f"every page while sending answered in {ms(page_max)} ms or less < {ms(args.page_max)} ms",
         page_max < args.page_max),
        ("no message after its patient's revocation committed", not overtaken),
    ]
    for text, met in checks:
        print(f"target: {text}: {'MET' if met else 'NOT MET'}")
    return 0 if all(met for _, met in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
