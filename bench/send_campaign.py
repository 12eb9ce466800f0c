"""Campaign send benchmark (issue 5, item 7; issue 11, the check-to-send window's cost).

    .venv/bin/python bench/send_campaign.py [--patients 20000] [--workers 2] [--windows 5,1,0.25]

Creates (dropping it first) a database of its own (`--database`, default `hipaamail_bench_send`), imports
synthetic patients with the import service (COPY), grants each a marketing authorization (bulk), creates and
approves one campaign per window to measure (same patients, same content), then times, in the same run and into
the same Debian postfix `smtp-sink` on a free loopback port:

- pipeline, once per `SEND_CHECK_WINDOW` in `--windows`: `campaign_launch` (deliveries materialised) and N
  forked worker processes each calling the one sender, `delivery_dispatch_batch`, until nothing is queued: rate
  limit (off), claim under lease, then check-to-send windows (each one transaction: lock the deliveries, lock
  the covering authorizations FOR SHARE, check through the window's end, send while the window lasts, record,
  audit, commit), over the smtp transport (one connection per batch) against PostgreSQL;
- raw: smtplib sending the same assembled messages (pre-rendered bytes) over N connections from N processes,
  once after the first pipeline and once after the last.

Prints each pipeline's rate, its ratio to raw smtplib (the mean of the two raw passes), the windows
(transactions, i.e. `delivery.batch_dispatched` audit events) per 1,000 messages and the widest check-to-send
gap recorded (`sent_at - checked_at`). Exits 1 if the default window's ratio is under `--min-ratio` (0.5).
"""
import argparse
import multiprocessing
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY_PARAGRAPH = (
    "This autumn our clinics offer longer opening hours for flu vaccination, with walk-in sessions on Saturday "
    "mornings and a reminder service by email. Bring your insurance card; the vaccination takes ten minutes. "
)
DEFAULT_WINDOW = 1.0  # hipaamail.settings.base: SEND_CHECK_WINDOW's default


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def recreate_database(admin_url: str, database: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
    return admin_url.rsplit("/", 1)[0] + f"/{database}"


def covered_patients_make(count: int):
    """`count` synthetic patients written by the real import, each covered for one marketing purpose for a year;
    returns the purpose. Call after django.setup() (the revocation benchmark uses it too)."""
    from django.db import transaction
    from django.utils import timezone

    from bench.import_patients import synthetic_csv
    from consent.models import Authorization, Patient, Purpose
    from consent.patient_import.validate import patient_csv_validate
    from consent.patient_import.write import patient_rows_write

    validation = patient_csv_validate(text=synthetic_csv(count))
    with transaction.atomic():
        patient_rows_write(rows=validation.rows)
    purpose = Purpose.objects.create(code="bench-marketing", name="Seasonal health news", kind="marketing")
    now = timezone.now()
    Authorization.objects.bulk_create(
        [
            Authorization(patient_id=pid, purpose=purpose, signed_at=now - timedelta(days=1), expires_at=now + timedelta(days=365))
            for pid in Patient.objects.values_list("id", flat=True)
        ],
        batch_size=5000,
    )
    return purpose


class Sink:
    """Debian postfix's smtp-sink on a free loopback port, started afresh for each pass, with its message
    counter (-c): the count it prints when stopped proves that the messages really reached an SMTP server."""

    def __init__(self):
        self.binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        if not Path(self.binary).exists():
            sys.exit("smtp-sink not found: apt-get install -y postfix")
        self.port = 0
        self._output = None
        self._process = None

    def start(self) -> int:
        self.port = free_port()
        self._output = tempfile.NamedTemporaryFile(prefix="smtp-sink-", suffix=".out", delete=False)
        self._process = subprocess.Popen(
            [self.binary, "-c", "-u", "root", f"127.0.0.1:{self.port}", "1000"], stdout=self._output
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self.port
            except OSError:
                time.sleep(0.05)
        sys.exit("smtp-sink did not start")

    def stop(self) -> int:
        """Stop the sink; returns how many messages it completed DATA for (it flushes its counter on exit)."""
        if self._process is None:
            return 0
        self._process.terminate()
        self._process.wait()
        self._process = None
        path = Path(self._output.name)
        self._output.close()
        counts = re.findall(rb"mesg=(\d+)", path.read_bytes()[-200:])
        path.unlink(missing_ok=True)
        return int(counts[-1]) if counts else 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process on this host has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker(campaign_id: int, results, profile_dir: str = "") -> None:
    from django.db import connection

    from campaigns.sending.dispatch import TransientSendError, delivery_dispatch_batch
    connection.close()  # a fresh connection per process
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]  # PostgreSQL's process serving this worker (same host)
    backend_before, own_before = _cpu_seconds(backend), time.process_time()
    profiler = None
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    claimed = 0
    while True:
        try:
            n = delivery_dispatch_batch(campaign_id=campaign_id)
        except TransientSendError:
            time.sleep(0.05)
            continue
        if not n:
            break
        claimed += n
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(Path(profile_dir) / f"worker-{campaign_id}-{os.getpid()}.prof"))
    results.put((claimed, time.process_time() - own_before, _cpu_seconds(backend) - backend_before))


def _raw_sender(port: int, messages: list[tuple[str, str, bytes]], results) -> None:
    smtp = smtplib.SMTP("127.0.0.1", port)
    smtp.ehlo()
    for from_address, to_address, raw in messages:
        smtp.sendmail(from_address, [to_address], raw)
    smtp.quit()
    results.put((len(messages), time.process_time()))


def raw_send(*, sink, messages, workers: int, context, results) -> tuple[float, int, float]:
    """The baseline: `messages` (pre-assembled bytes) sent by `workers` forked raw smtplib processes into a fresh
    run of `sink`, every one counted by it. Returns (seconds, sent, CPU seconds of the senders)."""
    from django.db import connection

    connection.close()  # the forks must not share the parent's database connection
    port = sink.start()
    started = time.perf_counter()
    senders = [
        context.Process(target=_raw_sender, args=(port, messages[i::workers], results)) for i in range(workers)
    ]
    for sender in senders:
        sender.start()
    done = [results.get() for _ in senders]
    for sender in senders:
        sender.join()
    seconds = time.perf_counter() - started
    received = sink.stop()
    sent = sum(n for n, _ in done)
    assert received == sent, f"the sink received {received} of the {sent} raw messages"
    return seconds, sent, sum(cpu for _, cpu in done)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--windows", default="5,1,0.25", help="SEND_CHECK_WINDOW values to measure, in this order (seconds, 0 < w <= 5)"
    )
    parser.add_argument(
        "--no-warmup", action="store_true",
        help="skip the untimed first pass (default window) that warms PostgreSQL's caches and the sink",
    )
    parser.add_argument(
        "--profile", default="", metavar="DIR",
        help="cProfile each worker of each counted pass into DIR/worker-CAMPAIGN-PID.prof (slows the workers)",
    )
    parser.add_argument("--min-ratio", type=float, default=0.5, help="target: pipeline / raw at the default window")
    parser.add_argument("--database", default="hipaamail_bench_send")
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    windows = [float(w) for w in args.windows.split(",")]
    if not all(0 < w <= 5 for w in windows):
        parser.error("each window must be more than 0 and at most 5 seconds (the setting's range)")
    sink = Sink()

    os.environ["DATABASE_URL"] = recreate_database(args.admin_url, args.database)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hipaamail.settings.test"
    os.environ.pop("CELERY_BROKER_URL", None)
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.WARNING)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import F, Max

    from accounts.tests.factories import staff_make
    from audit.models import AuditEvent
    from campaigns.models import Campaign, Delivery
    from campaigns.sending.dispatch import campaign_finish_if_done
    from campaigns.sending.messages import CampaignRender
    from campaigns.sending.transport import SmtpTransport, transport_for_settings
    from campaigns.services.launch import campaign_launch
    from campaigns.services.lifecycle import campaign_approve, campaign_create, campaign_submit

    call_command("migrate", verbosity=0)
    settings.HIPAAMAIL_TRANSPORT = "smtp"
    settings.EMAIL_HOST = "127.0.0.1"  # EMAIL_PORT: a fresh sink on a free port for each pass
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.HIPAAMAIL_SEND_BATCH_SIZE = args.batch_size
    settings.HIPAAMAIL_RATE_LIMIT = 0
    # What is measured is the product's real path: PostgreSQL (claim with SKIP LOCKED, FOR SHARE locks, one
    # UPDATE per window) and the smtp transport (pipelined smtplib), not the SQLite demo or the Django backend.
    assert connection.vendor == "postgresql", connection.vendor
    assert isinstance(transport_for_settings(), SmtpTransport)

    started = time.perf_counter()
    purpose = covered_patients_make(args.patients)
    author, approver = staff_make(role="marketer"), staff_make(role="compliance officer")
    campaigns = []
    passes = ([] if args.no_warmup else [None]) + windows  # None: the warm-up pass, at the default window
    for window in passes:
        campaign = campaign_create(
            actor=author, name=f"Flu season (window {window or DEFAULT_WINDOW:g} s)", purpose=purpose,
            subject="Flu vaccination: longer hours this autumn",
            body_text="Dear patient,\n\n" + "\n\n".join([BODY_PARAGRAPH * 2] * 4) + "\n\nYour care team",
        )
        campaign_submit(actor=author, campaign_id=campaign.pk)
        campaign_approve(actor=approver, campaign_id=campaign.pk)
        campaigns.append(campaign)
    # Planner statistics, as autovacuum would have them for tables this size: without them the planner guesses
    # a handful of authorizations per purpose and scans all of them for each batch's consent check.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"setup: {args.patients:,} covered patients, {len(campaigns)} approved campaigns, "
          f"in {time.perf_counter() - started:.1f}s")

    context = multiprocessing.get_context("fork")
    from django.urls import reverse

    reverse("unsubscribe", kwargs={"token": "warm"})  # load the URLconf once, as a long-lived worker has
    from unittest import mock

    results = context.Queue()
    pipelines = []  # one dict per window
    raws = []  # (seconds, sent)
    messages = None

    def raw_pass() -> None:
        raws.append(raw_send(sink=sink, messages=messages, workers=args.workers, context=context, results=results))

    try:
        for campaign, window in zip(campaigns, passes):
            settings.HIPAAMAIL_SEND_CHECK_WINDOW = window or DEFAULT_WINDOW  # read by the sender at each batch; forked below
            connection.close()
            settings.EMAIL_PORT = sink.start()
            started = time.perf_counter()
            with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):  # these processes are the workers
                campaign_launch(actor=approver, campaign_id=campaign.pk)
            launched = time.perf_counter() - started
            connection.close()
            profile_dir = args.profile if window is not None else ""
            workers = [
                context.Process(target=_worker, args=(campaign.pk, results, profile_dir)) for _ in range(args.workers)
            ]
            for worker in workers:
                worker.start()
            done = [results.get() for _ in workers]
            claimed = sum(n for n, _, _ in done)
            for worker in workers:
                worker.join()
            seconds = time.perf_counter() - started
            campaign_finish_if_done(campaign_id=campaign.pk)
            sent = Delivery.objects.filter(campaign=campaign, status="sent").count()
            assert sent == args.patients, f"only {sent} sent"
            received = sink.stop()
            assert received == sent, f"the sink received {received} messages, the database says {sent} sent"
            transactions = AuditEvent.objects.filter(
                action="delivery.batch_dispatched", object_type="campaign", object_id=str(campaign.pk)
            ).count()
            widest = Delivery.objects.filter(campaign=campaign, status="sent").aggregate(
                gap=Max(F("sent_at") - F("checked_at"))
            )["gap"]
            if window is None:
                print(f"warm-up pass (not counted): {sent / seconds:,.0f} msgs/s")
                continue
            pipelines.append(
                {
                    "window": window, "seconds": seconds, "launch": launched, "sent": sent, "claimed": claimed,
                    "windows": transactions, "widest": widest.total_seconds(),
                    "worker_cpu": sum(cpu for _, cpu, _ in done), "postgres_cpu": sum(cpu for _, _, cpu in done),
                    "status": Campaign.objects.get(pk=campaign.pk).status,
                }
            )
            if messages is None:
                # The baseline: the same messages, pre-rendered, raw smtplib over the same number of connections.
                render = CampaignRender(campaign=campaign)
                rows = list(
                    Delivery.objects.filter(campaign=campaign).order_by("id").values_list("id", "patient__email")
                )
                messages = []
                for delivery_id, address in rows:
                    assembled = render.assemble(delivery_id=delivery_id, to_address=address)
                    messages.append((assembled.from_address, assembled.to_address, assembled.raw))
                raw_pass()
        raw_pass()
    finally:
        sink.stop()

    size = sum(len(raw) for _, _, raw in messages) / len(messages)
    raw_rates = [sent / seconds for seconds, sent, _ in raws]
    raw_cpu = sum(cpu for _, _, cpu in raws) / sum(sent for _, sent, _ in raws)
    raw_rate = sum(raw_rates) / len(raw_rates)
    print(f"messages: {args.patients:,} per pass, {size / 1024:.1f} KB average; {args.workers} workers, "
          f"batches of {args.batch_size}; PostgreSQL, smtp transport, smtp-sink counted every message")
    print("raw smtplib, pre-rendered bytes, {} connections: {} msgs/s (mean {:,.0f})".format(
        args.workers, " · ".join(f"{rate:,.0f}" for rate in raw_rates), raw_rate))
    print(f"  CPU per message, raw sender: {raw_cpu * 1e6:,.0f} µs")
    print(f"{'window':>8} {'total s':>8} {'launch s':>8} {'msgs/s':>8} {'dispatch msgs/s':>15} "
          f"{'ratio':>6} {'windows/1000':>12} {'msgs/window':>11} {'widest gap s':>12} {'CPU µs/msg: worker':>18} "
          f"{'postgres':>8}")
    default_ratio = None
    for p in pipelines:
        rate = p["sent"] / p["seconds"]
        ratio = rate / raw_rate
        if p["window"] == DEFAULT_WINDOW:
            default_ratio = ratio
        print(f"{p['window']:>8g} {p['seconds']:>8.2f} {p['launch']:>8.2f} {rate:>8,.0f} "
              f"{p['sent'] / (p['seconds'] - p['launch']):>15,.0f} {ratio:>6.2f} "
              f"{1000 * p['windows'] / p['sent']:>12.2f} {p['sent'] / p['windows']:>11.1f} {p['widest']:>12.3f} {p['worker_cpu'] / p['sent'] * 1e6:>18,.0f} "
              f"{p['postgres_cpu'] / p['sent'] * 1e6:>8,.0f}")
    if default_ratio is None:
        print("target: the default window (1 s) was not measured")
        return 0
    met = default_ratio >= args.min_ratio
    print(f"target: pipeline / raw at the default window {default_ratio:.2f} "
          f"{'>=' if met else '<'} {args.min_ratio}: {'MET' if met else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
