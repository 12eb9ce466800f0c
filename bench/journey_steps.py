"""Journey steps benchmark (issue 14, "Done when"): 100,000 due send steps end to end, beside the campaign figure.

    .venv/bin/python bench/journey_steps.py [--patients 100000] [--scanners 1] [--workers 2] [--repeats 3]

Creates (dropping it first) a database of its own (`--database`, default `hipaamail_bench_journeys`), imports
synthetic patients with the import service and grants each a marketing authorization (bench/send_campaign.py's
`covered_patients_make`), publishes the purpose's form, and then, once per repeat, in the same run and into a
fresh Debian postfix `smtp-sink` on a free loopback port each time:

- enrolment (set-up, timed but not counted): a new live journey (written, submitted, approved through the
  services) whose first step is a send and whose second a three-day wait, triggered by `equipment.delivered` with
  a condition of its own; one event per patient (bulk inserted, as the API or a CSV event file would have stored
  them), routed through the real intake (`events_route`, which enrols through `enrolments_create`) until none is
  left: every patient has an enrolment due now. Then ANALYZE, as autovacuum would have done for tables this size.
- journey steps (the figure): `--scanners` forked processes calling the scanner (`journey_steps_advance`) until
  nothing is due and, at the same time, `--workers` forked processes calling the one sender
  (`delivery_dispatch_batch`) on the step's campaign until the scanners have finished and nothing is queued. The
  clock runs from the fork to the last delivery recorded: scan, delivery created, claim, consent check under
  lock, render, SMTP, record, audit.
- campaign (the figure beside it): a campaign to the same patients, same subject and body, `campaign_launch`
  plus the same number of sender processes (send_campaign.py's worker), into a fresh sink;
- raw: smtplib sending the step's assembled messages (pre-rendered bytes) over `--workers` connections.

Verifies every pass: every delivery sent, one per patient, the sink's counter equal to the database's; for the
journey also one step record per enrolment and every enrolment moved on to the wait. Prints msgs/s for journey
steps, campaign and raw, the ratios, and CPU per message. Exits 1 if the median journey rate is under
`--min-rate` (1,000 msgs/s).
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.send_campaign import (
    BODY_PARAGRAPH,
    Sink,
    _cpu_seconds,
    _worker,
    covered_patients_make,
    raw_send,
    recreate_database,
)

SUBJECT = "Flu vaccination: longer hours this autumn"
BODY = "Dear patient,\n\n" + "\n\n".join([BODY_PARAGRAPH * 2] * 4) + "\n\nYour care team"
EVENT_TYPE = "equipment.delivered"


def _backend_pid() -> int:
    from django.db import connection

    connection.close()  # a fresh connection per process
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _scanner(results, profile_dir: str) -> None:
    """Scanner passes until nothing is due (what journey_advance_task does, without the pass limit)."""
    from journeys.engine.steps import journey_steps_advance

    backend = _backend_pid()
    backend_before, own_before = _cpu_seconds(backend), time.process_time()
    profiler = _profiler(profile_dir)
    taken = passes = 0
    while True:
        n, _campaigns = journey_steps_advance()
        if not n:
            break
        taken += n
        passes += 1
    finished = time.perf_counter()
    _profile_dump(profiler, profile_dir, "scanner")
    results.put(
        ("scanner", taken, passes, finished, time.process_time() - own_before, _cpu_seconds(backend) - backend_before)
    )


def _step_sender(campaign_id: int, scanning_done, results, profile_dir: str) -> None:
    """The one sender on the step campaign while the scanners queue its deliveries: it stops once the scanners
    have finished and a claim after that finds nothing."""
    from campaigns.sending.dispatch import TransientSendError, delivery_dispatch_batch

    backend = _backend_pid()
    backend_before, own_before = _cpu_seconds(backend), time.process_time()
    profiler = _profiler(profile_dir)
    claimed = idle = 0
    while True:
        finished = scanning_done.is_set()  # read before the claim: every scanner commit is then visible to it
        try:
            n = delivery_dispatch_batch(campaign_id=campaign_id)
        except TransientSendError:
            time.sleep(0.05)
            continue
        claimed += n
        if n:
            continue
        if finished:
            break
        idle += 1
        time.sleep(0.005)
    done = time.perf_counter()
    _profile_dump(profiler, profile_dir, "sender")
    results.put(
        ("sender", claimed, idle, done, time.process_time() - own_before, _cpu_seconds(backend) - backend_before)
    )


def _profiler(profile_dir: str):
    if not profile_dir:
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _profile_dump(profiler, profile_dir: str, name: str) -> None:
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(Path(profile_dir) / f"{name}-{os.getpid()}.prof"))


def _windows(campaign_id: int) -> int:
    """The sender's check-to-send windows (one transaction and one `delivery.batch_dispatched` event each)."""
    from audit import actions
    from audit.models import AuditEvent

    return AuditEvent.objects.filter(
        action=actions.DELIVERY_BATCH_DISPATCHED, object_type="campaign", object_id=str(campaign_id)
    ).count()


def _quiet_hours_away(tz_name: str) -> str:
    """Quiet hours that are real (every step checks them) but start 8 hours from now and end 8 hours before, in
    the patients' zone, so that a run never falls into them."""
    import zoneinfo

    hour = datetime.now(zoneinfo.ZoneInfo(tz_name)).hour
    return f"{(hour + 8) % 24:02d}:00-{(hour + 16) % 24:02d}:00"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--scanners", type=int, default=1, help="scanner processes (journey_steps_advance)")
    parser.add_argument("--workers", type=int, default=2, help="sender processes (journey and campaign alike)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=200, help="SEND_BATCH_SIZE")
    parser.add_argument("--journey-batch", type=int, default=500, help="JOURNEY_BATCH_SIZE (enrolments per pass)")
    parser.add_argument("--raw-messages", type=int, default=20_000, help="messages for the raw pass (0: --patients)")
    parser.add_argument(
        "--no-warmup", action="store_true", help="skip the untimed journey pass over 2,000 patients that comes first"
    )
    parser.add_argument("--no-campaign", action="store_true", help="skip the campaign and raw passes")
    parser.add_argument(
        "--profile",
        default="",
        metavar="DIR",
        help="cProfile every scanner and sender of the journey passes into DIR/*.prof (slows them)",
    )
    parser.add_argument("--min-rate", type=float, default=1000.0, help="target: journey steps msgs/s (median)")
    parser.add_argument("--database", default="hipaamail_bench_journeys")
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    sink = Sink()

    os.environ["DATABASE_URL"] = recreate_database(args.admin_url, args.database)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hipaamail.settings.test"
    os.environ.pop("CELERY_BROKER_URL", None)
    import logging

    logging.disable(logging.WARNING)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone

    from accounts.tests.factories import staff_make
    from campaigns.models import Delivery
    from campaigns.sending.dispatch import campaign_finish_if_done
    from campaigns.sending.messages import CampaignRender
    from campaigns.sending.transport import SmtpTransport, transport_for_settings
    from campaigns.services.launch import campaign_launch
    from campaigns.services.lifecycle import campaign_approve, campaign_create, campaign_submit
    from consent.models import Patient, PatientEvent
    from consent.tests.factories import form_published_make
    from journeys.engine.intake import events_route
    from journeys.models import Enrolment, JourneyStep, StepKind, StepOutcome, StepRun
    from journeys.services.journeys import StepSpec
    from journeys.tests.factories import event_trigger, journey_live_make

    call_command("migrate", verbosity=0)
    settings.HIPAAMAIL_TRANSPORT = "smtp"
    settings.EMAIL_HOST = "127.0.0.1"  # EMAIL_PORT: a fresh sink on a free port for each pass
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.HIPAAMAIL_SEND_BATCH_SIZE = args.batch_size
    settings.HIPAAMAIL_JOURNEY_BATCH_SIZE = args.journey_batch
    settings.HIPAAMAIL_RATE_LIMIT = 0
    settings.HIPAAMAIL_QUIET_HOURS = _quiet_hours_away(settings.TIME_ZONE)
    # The product's real path: PostgreSQL (SKIP LOCKED scans and claims, FOR SHARE consent locks) and the smtp
    # transport (pipelined smtplib), not the SQLite demo or Django's email backend.
    assert connection.vendor == "postgresql", connection.vendor
    assert isinstance(transport_for_settings(), SmtpTransport)

    started = time.perf_counter()
    purpose = covered_patients_make(args.patients)
    form_published_make(purpose)  # a journey's purpose needs a published form
    author, approver = staff_make(role="marketer"), staff_make(role="compliance officer")
    patient_ids = list(Patient.objects.order_by("id").values_list("id", flat=True))
    print(
        f"setup: {args.patients:,} covered patients in {time.perf_counter() - started:.1f}s; "
        f"quiet hours {settings.HIPAAMAIL_QUIET_HOURS} ({settings.TIME_ZONE}), frequency cap "
        f"{settings.HIPAAMAIL_FREQUENCY_CAP or 'off'}"
    )

    context = multiprocessing.get_context("fork")
    from django.urls import reverse

    reverse("unsubscribe", kwargs={"token": "warm"})  # load the URLconf once, as a long-lived worker has
    from unittest import mock

    results = context.Queue()
    runs = []

    def enrol(repeat: int, patients: list[int]):
        """A new live journey and one enrolment per patient due now, through the event intake."""
        code = f"BENCH-{repeat}"
        journey = journey_live_make(
            purpose=purpose,
            author=author,
            approver=approver,
            name=f"CPAP follow-up (run {repeat})",
            trigger=event_trigger(EVENT_TYPE, {"equipment_type": code}),
            steps=[
                StepSpec(kind=StepKind.SEND, subject=SUBJECT, body_text=BODY),
                StepSpec(kind=StepKind.WAIT, wait_minutes=3 * 1440),
            ],
        )
        step = JourneyStep.objects.get(version_id=journey.live_version_id, position=1)
        occurred = timezone.now() - timedelta(minutes=1)
        PatientEvent.objects.bulk_create(
            [
                PatientEvent(
                    patient_id=pid,
                    type=EVENT_TYPE,
                    occurred_at=occurred,
                    source="bench",
                    source_event_id=f"run{repeat}-{pid}",
                    attributes={"equipment_type": code},
                )
                for pid in patients
            ],
            batch_size=5000,
        )
        begun = time.perf_counter()
        enrolled = 0
        while True:
            routed, due = events_route()
            if not routed:
                break
            enrolled += len(due)
        seconds = time.perf_counter() - begun
        assert enrolled == len(patients), f"{enrolled} enrolled of {len(patients)}"
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        return journey, step.campaign_id, len(patients), seconds

    def journey_pass(journey, campaign_id: int, count: int) -> dict:
        connection.close()
        settings.EMAIL_PORT = sink.start()
        scanning_done = context.Event()
        started = time.perf_counter()
        scanners = [context.Process(target=_scanner, args=(results, args.profile)) for _ in range(args.scanners)]
        senders = [
            context.Process(target=_step_sender, args=(campaign_id, scanning_done, results, args.profile))
            for _ in range(args.workers)
        ]
        for process in scanners + senders:
            process.start()
        reports = {"scanner": [], "sender": []}
        # Both kinds report on one queue; the senders only finish once told that every scanner has.
        while len(reports["scanner"]) < len(scanners):
            report = results.get()
            reports[report[0]].append(report)
        scanning_done.set()
        while len(reports["sender"]) < len(senders):
            report = results.get()
            reports[report[0]].append(report)
        for process in scanners + senders:
            process.join()
        seconds = time.perf_counter() - started
        received = sink.stop()
        scanned_at = max(r[3] for r in reports["scanner"]) - started
        # Every delivery sent, one per patient; one step record per enrolment; every enrolment now waiting.
        statuses = dict(Delivery.objects.filter(campaign_id=campaign_id).values_list("status").annotate(Count("id")))
        assert statuses == {"sent": count}, statuses
        per_patient = (
            Delivery.objects.filter(campaign_id=campaign_id)
            .values("patient_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )
        assert per_patient == 0, f"{per_patient} patients got the step twice"
        assert Delivery.objects.filter(campaign_id=campaign_id).values("patient_id").distinct().count() == count
        assert received == count, f"the sink received {received}, the database says {count} sent"
        runs_ = StepRun.objects.filter(enrolment__journey=journey)
        assert runs_.filter(outcome=StepOutcome.QUEUED).count() == count == runs_.count()
        waiting = Enrolment.objects.filter(
            journey=journey,
            status="active",
            step_position=2,
            step_started_at__isnull=False,
            due_at__gt=timezone.now(),
        ).count()
        assert waiting == count, f"{waiting} enrolments at the wait"
        duplicates = Delivery.objects.filter(campaign_id=campaign_id, possible_duplicate=True).count()
        assert duplicates == 0, duplicates
        return {
            "windows": _windows(campaign_id),
            "seconds": seconds,
            "scanned": scanned_at,
            "sent": count,
            "passes": sum(r[2] for r in reports["scanner"]),
            "idle": sum(r[2] for r in reports["sender"]),
            "scanner_cpu": sum(r[4] for r in reports["scanner"]),
            "scanner_pg": sum(r[5] for r in reports["scanner"]),
            "sender_cpu": sum(r[4] for r in reports["sender"]),
            "sender_pg": sum(r[5] for r in reports["sender"]),
        }

    def campaign_pass(repeat: int) -> dict:
        campaign = campaign_create(
            actor=author, name=f"Flu season (run {repeat})", purpose=purpose, subject=SUBJECT, body_text=BODY
        )
        campaign_submit(actor=author, campaign_id=campaign.pk)
        campaign_approve(actor=approver, campaign_id=campaign.pk)
        connection.close()
        settings.EMAIL_PORT = sink.start()
        started = time.perf_counter()
        with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):  # these processes are the workers
            campaign_launch(actor=approver, campaign_id=campaign.pk)
        launched = time.perf_counter() - started
        connection.close()
        workers = [context.Process(target=_worker, args=(campaign.pk, results)) for _ in range(args.workers)]
        for worker in workers:
            worker.start()
        done = [results.get() for _ in workers]
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - started
        campaign_finish_if_done(campaign_id=campaign.pk)
        windows = _windows(campaign.pk)
        received = sink.stop()
        sent = Delivery.objects.filter(campaign=campaign, status="sent").count()
        assert sent == args.patients, f"only {sent} sent"
        assert received == sent, f"the sink received {received}, the database says {sent} sent"
        return {
            "windows": windows,
            "seconds": seconds,
            "launch": launched,
            "sent": sent,
            "cpu": sum(c for _, c, _ in done),
            "pg": sum(p for _, _, p in done),
        }

    def raw_pass(messages) -> dict:
        seconds, sent, cpu = raw_send(sink=sink, messages=messages, workers=args.workers, context=context, results=results)
        return {"seconds": seconds, "sent": sent, "cpu": cpu}

    messages = None
    try:
        if not args.no_warmup:
            # PostgreSQL's caches, planner statistics that know deliveries and step records, the sink.
            journey, campaign_id, count, _ = enrol(0, patient_ids[:2000])
            warm = journey_pass(journey, campaign_id, count)
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
            print(f"warm-up (not counted): {count:,} journey steps, {count / warm['seconds']:,.0f} msgs/s", flush=True)
        for repeat in range(1, args.repeats + 1):
            journey, campaign_id, count, enrol_seconds = enrol(repeat, patient_ids)
            run = {"enrol": enrol_seconds, "journey": journey_pass(journey, campaign_id, count)}
            if messages is None and not args.no_campaign:
                from campaigns.models import Campaign

                render = CampaignRender(campaign=Campaign.objects.get(pk=campaign_id))
                rows = (
                    Delivery.objects.filter(campaign_id=campaign_id)
                    .order_by("id")
                    .values_list("id", "patient__email")[: args.raw_messages or args.patients]
                )
                messages = []
                for delivery_id, address in rows:
                    assembled = render.assemble(delivery_id=delivery_id, to_address=address)
                    messages.append((assembled.from_address, assembled.to_address, assembled.raw))
            if not args.no_campaign:
                run["campaign"] = campaign_pass(repeat)
                run["raw"] = raw_pass(messages)
            runs.append(run)
            _print_run(repeat, run)
    finally:
        sink.stop()

    print()
    print(
        f"{args.patients:,} due steps per run, {args.scanners} scanner(s), {args.workers} sender processes, "
        f"sender batches of {args.batch_size}, scanner passes of {args.journey_batch}; "
        f"PostgreSQL, smtp transport, smtp-sink counted every message"
        + (f"; messages {sum(len(m[2]) for m in messages) / len(messages) / 1024:.1f} KB" if messages else "")
    )
    journey_rates = [r["journey"]["sent"] / r["journey"]["seconds"] for r in runs]
    _summary("journey steps, end to end", journey_rates)
    if not args.no_campaign:
        campaign_rates = [r["campaign"]["sent"] / r["campaign"]["seconds"] for r in runs]
        raw_rates = [r["raw"]["sent"] / r["raw"]["seconds"] for r in runs]
        _summary("campaign, launch + send", campaign_rates)
        _summary(f"raw smtplib, {args.workers} connections", raw_rates)
        ratios = [j / c for j, c in zip(journey_rates, campaign_rates)]
        print(
            f"journey / campaign, per run: {' · '.join(f'{x:.2f}' for x in ratios)}; "
            f"journey / raw: {' · '.join(f'{j / r:.2f}' for j, r in zip(journey_rates, raw_rates))}"
        )
    median = statistics.median(journey_rates)
    met = median >= args.min_rate
    print(
        f"target: journey steps {median:,.0f} msgs/s (median) {'>=' if met else '<'} {args.min_rate:,.0f}: "
        f"{'MET' if met else 'NOT MET'}"
    )
    return 0 if met else 1


def _print_run(repeat: int, run: dict) -> None:
    j = run["journey"]
    n = j["sent"]
    line = (
        f"run {repeat}: journey steps {j['seconds']:.2f} s, {n / j['seconds']:,.0f} msgs/s "
        f"(scanners done at {j['scanned']:.2f} s, {j['passes']} passes; senders idle {j['idle']}x; "
        f"CPU µs/msg scanner {j['scanner_cpu'] / n * 1e6:,.0f} + its postgres {j['scanner_pg'] / n * 1e6:,.0f}, "
        f"sender {j['sender_cpu'] / n * 1e6:,.0f} + its postgres {j['sender_pg'] / n * 1e6:,.0f}; "
        f"{n / j['windows']:.0f} msgs/window); "
        f"enrolment (set-up) {run['enrol']:.1f} s"
    )
    if "campaign" in run:
        c, r = run["campaign"], run["raw"]
        line += (
            f"\n       campaign {c['seconds']:.2f} s, {c['sent'] / c['seconds']:,.0f} msgs/s (launch "
            f"{c['launch']:.2f} s; CPU µs/msg sender {c['cpu'] / c['sent'] * 1e6:,.0f} + its postgres "
            f"{c['pg'] / c['sent'] * 1e6:,.0f}; {c['sent'] / c['windows']:.0f} msgs/window); raw {r['sent'] / r['seconds']:,.0f} msgs/s; "
            f"journey / campaign {(n / j['seconds']) / (c['sent'] / c['seconds']):.2f}"
        )
    print(line, flush=True)


def _summary(label: str, rates: list[float]) -> None:
    print(
        f"{label}: {' · '.join(f'{x:,.0f}' for x in rates)} msgs/s; median {statistics.median(rates):,.0f}, "
        f"spread {min(rates):,.0f}–{max(rates):,.0f} ({(max(rates) - min(rates)) / statistics.median(rates):.0%})"
    )


if __name__ == "__main__":
    sys.exit(main())
