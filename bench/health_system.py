"""At the size of a health system (issue 15, item 5): launch, live segment counts and the send pipeline over 1,000,000
patients, beside raw smtplib and django-post-office in the same run.

    .venv/bin/python bench/health_system.py [--patients 1000000] [--repeats 3] [--rebuild]

The data set (bench/health_system_data.py: 1,000,000 patients with encrypted identifiers, 3,000,000 authorizations
across 10 purposes, 5 % revoked and 2 % expired, 50,000 suppressions) is built once in a database of its own
(`hipaamail_bench_hs`; `hipaamail_bench_hs_<N>` for another `--patients`) and kept (migrated when the schema has
moved on); `--rebuild` forces it. Each run first empties the deliveries (and what hangs off them) that earlier runs left, then an untimed warm-up, then per
repeat (`--repeats`, default 3), in this order:

- counts: (after the process's count index has loaded, ADR 0022, as in a web worker that has been up a while;
  `--count-sql` for the SQL statement of ADR 0021 instead) the run's share of `--count-requests` (50 over all runs) POSTs of varied segment rules (age, sex, states, postal codes, conditions,
  programs, last visit, NOT and a nested OR group; each for one of the ten purposes) to the segment builder's live
  count endpoint (`campaigns:segment_counts`, what static/js/segment-builder.js calls), through Django's test
  client as a signed-in marketer who passed the second factor; p50 / p95 / max of the response times;
- launch: a new campaign for one marketing purpose to the segment "aged 40 to 79, seen in the last two years"
  (about 310,000 of the 1,000,000), written, submitted and approved through the services, then `campaign_launch`
  timed: one delivery per patient of the segment, queued or blocked with its reason;
- send: `--workers` (2) forked processes running the one sender (`delivery_dispatch_batch`, bench/send_campaign.py's
  worker) until every queued delivery of that launch is sent, into a fresh `smtp-sink`; the sink's count must equal
  the database's;
- raw: smtplib sending the first `--raw-messages` (20,000) of those messages, pre-rendered, over `--workers`
  connections (bench/send_campaign.py's raw sender);
- post_office: the same 20,000 messages queued with django-post-office's `send_many` and sent with
  `send_queued_mail --processes 3` (POST_OFFICE BATCH_SIZE 6000, THREADS_PER_PROCESS 1, the best settings found,
  /work/shared/NOTES.md) into a fresh sink, in a virtualenv of its own (bench/requirements.txt, made under
  /tmp on first use; the product never installs it) on a database of its own (bench/post_office_settings.py).

Exits 1 when a target is missed: launch under `--max-launch` (15 s) in every repeat, counts p95 under `--max-p95`
(0.5 s) over all requests, send / raw at least `--min-raw-ratio` (0.5) and hipaamail (launch + send) / post_office
(queue + send) at least `--min-post-office-ratio` (3), by their medians.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import health_system_data as data  # noqa: E402
from bench.send_campaign import BODY_PARAGRAPH, Sink, _worker, raw_send, recreate_database  # noqa: E402

SUBJECT = "Our new diabetes prevention classes start in January"
# The body send_campaign.py and journey_steps.py send (no merge field), so that the figures compare across them.
# `--merge-field` greets each patient by name instead: the sender then reads and decrypts every first name.
BODY = "Dear patient,\n\n" + "\n\n".join([BODY_PARAGRAPH * 2] * 4) + "\n\nYour care team"
BODY_MERGED = BODY.replace("Dear patient,", "Dear {{ first_name }},")
LAUNCH_PURPOSE = "diabetes-program"
POST_OFFICE_VENV = Path("/tmp/hipaamail-bench-post-office")


def launch_rules(today) -> dict:
    """The campaign's segment: adults aged 40 to 79 seen in the last two years (about 31 % of the patients)."""
    return {
        "op": "and",
        "rules": [
            {"field": "age", "min": 40, "max": 79},
            {"field": "last_visit", "after": (today - timedelta(days=730)).isoformat()},
        ],
    }


def count_requests(n: int, purposes: list[int], seed: int = 15) -> list[dict]:
    """`n` varied POSTs of the segment builder's form (its field names: campaigns.forms.segments), from broad
    ("everyone 18 or over") to narrow ("E11 in two postal prefixes, not enrolled in DPP"), each for a purpose."""
    import random

    rng = random.Random(seed)

    def row(kind: str) -> dict:
        if kind == "age":
            low = rng.choice([18, 30, 40, 50, 65])
            return {"field": "age", "low": str(low), "high": str(low + rng.choice([10, 20, 35, 60]))}
        if kind == "sex":
            return {"field": "sex", "values": rng.choice(["F", "M", "F, X"])}
        if kind == "state":
            return {"field": "state", "values": ", ".join(rng.sample(data.STATES, rng.randrange(1, 4)))}
        if kind == "postal_prefix":
            return {"field": "postal_prefix", "values": str(rng.randrange(460, 630))}
        if kind == "postal_in":
            return {"field": "postal_in", "values": ", ".join(str(rng.randrange(46000, 63000)) for _ in range(20))}
        if kind == "condition":
            return {"field": "condition", "values": ", ".join(rng.sample(data.CONDITIONS, rng.randrange(1, 3)))}
        if kind == "program":
            return {"field": "program", "values": rng.choice(data.PROGRAMS)}
        year = rng.choice([2024, 2025, 2026])
        return {"field": "last_visit", "low": f"{year}-{rng.randrange(1, 13):02d}-01", "high": ""}

    kinds = ["age", "sex", "state", "postal_prefix", "postal_in", "condition", "program", "last_visit"]
    requests = []
    for i in range(n):
        post = {"name": f"Live count {i}", "purpose": str(purposes[i % len(purposes)]), "op_main": "and",
                "op_nested": "or"}
        rows = [row(kind) for kind in rng.sample(kinds, rng.randrange(1, 4))]
        for index, leaf in enumerate(rows):
            for key, value in leaf.items():
                post[f"main-{index}-{key}"] = value
            if rng.random() < 0.15:
                post[f"main-{index}-negate"] = "on"
        if rng.random() < 0.3:  # a nested OR group of conditions or states
            for index, kind in enumerate(rng.sample(["condition", "state", "program"], 2)):
                for key, value in row(kind).items():
                    post[f"nested-{index}-{key}"] = value
        requests.append(post)
    return requests


def _load() -> str:
    """Load averages (1, 5, 15 minutes) now, to print beside each figure."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _post_office_python(venv: Path) -> Path:
    """The benchmark's own virtualenv with django-post-office (bench/requirements.txt), made on first use."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    wanted = (ROOT / "bench" / "requirements.txt").read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"making {venv} for django-post-office (bench/requirements.txt)", flush=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
         str(ROOT / "bench" / "requirements.txt")],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--rebuild", action="store_true", help="build the data set again even if it is kept")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--build-only", action="store_true", help="build (or check) the data set, then stop")
    parser.add_argument("--workers", type=int, default=2, help="sender processes and raw smtplib connections")
    parser.add_argument("--batch-size", type=int, default=500, help="SEND_BATCH_SIZE (the setting's default)")
    parser.add_argument("--count-requests", type=int, default=50, help="live count requests, over all runs")
    parser.add_argument("--raw-messages", type=int, default=20_000, help="messages for raw smtplib and post_office")
    parser.add_argument("--post-office-processes", type=int, default=3)
    parser.add_argument("--post-office-batch", type=int, default=6000)
    parser.add_argument("--merge-field", action="store_true", help="greet each patient by first name ({{ first_name }})")
    parser.add_argument("--no-post-office", action="store_true", help="skip the django-post-office pass")
    parser.add_argument(
        "--count-sql", action="store_true",
        help="count with the SQL statement (ADR 0021) instead of the process's count index (ADR 0022)",
    )
    parser.add_argument("--post-office-venv", type=Path, default=POST_OFFICE_VENV)
    parser.add_argument("--max-launch", type=float, default=15.0)
    parser.add_argument("--max-p95", type=float, default=0.5)
    parser.add_argument("--min-raw-ratio", type=float, default=0.5)
    parser.add_argument("--min-post-office-ratio", type=float, default=3.0)
    parser.add_argument("--database", default="", help="default hipaamail_bench_hs (_<patients> for other sizes)")
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    database = args.database or ("hipaamail_bench_hs" if args.patients == 1_000_000 else f"hipaamail_bench_hs_{args.patients}")
    url = args.admin_url.rsplit("/", 1)[0] + f"/{database}"
    post_office_python = None if args.no_post_office else _post_office_python(args.post_office_venv)
    sink = Sink()
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} CPUs; load {_load()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    kept = None if args.rebuild else data.kept(url, args.patients)
    if kept is None:
        recreate_database(args.admin_url, database)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "hipaamail.settings.test"
    os.environ.pop("CELERY_BROKER_URL", None)
    import logging

    logging.disable(logging.WARNING)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    if kept is not None:
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            # As an installation upgrades: the kept rows stay, the new migrations run on them (timed, printed).
            started = time.perf_counter()
            call_command("migrate", verbosity=0)
            migrated = time.perf_counter() - started
            # Then VACUUM ANALYZE, as autovacuum soon would: a migration that rewrote every patient (consent 0010)
            # leaves the visibility map cleared, and index-only scans would read the table until it is set again.
            connection.close()
            import psycopg

            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("VACUUM ANALYZE")
            print(
                f"the kept data set was migrated to the current schema in {migrated:.1f} s, "
                f"then vacuumed in {time.perf_counter() - started - migrated:.1f} s"
            )
    if kept is None:
        call_command("migrate", verbosity=0)
        print(f"building the data set in {database} ({args.patients:,} patients):", flush=True)
        seconds = data.build(patients=args.patients, say=lambda line: print(line, flush=True))
        print(f"data set built in {seconds:.1f} s", flush=True)
    else:
        print(f"data set: kept in {database} (built {kept['built_at']:%Y-%m-%d %H:%M} in {kept['seconds']:.0f} s; "
              "--rebuild to build it again)")

    if args.build_only:
        return 0
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from campaigns.models import Campaign, Delivery
    from campaigns.sending.dispatch import campaign_finish_if_done
    from campaigns.sending.messages import CampaignRender
    from campaigns.sending.transport import SmtpTransport, transport_for_settings
    from campaigns.services.launch import campaign_launch
    from campaigns.services.lifecycle import campaign_approve, campaign_create_draft, campaign_submit
    from campaigns.services.segments import segment_save
    from consent.models import Authorization, Patient, Purpose, Revocation, Suppression

    settings.HIPAAMAIL_TRANSPORT = "smtp"
    settings.EMAIL_HOST = "127.0.0.1"  # EMAIL_PORT: a fresh sink on a free port for each pass
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.HIPAAMAIL_SEND_BATCH_SIZE = args.batch_size
    settings.HIPAAMAIL_COUNT_INDEX = not args.count_sql
    settings.HIPAAMAIL_RATE_LIMIT = 0
    assert connection.vendor == "postgresql", connection.vendor
    assert isinstance(transport_for_settings(), SmtpTransport)

    now = timezone.now()
    patients = Patient.objects.count()
    authorizations = Authorization.objects.count()
    revoked = Revocation.objects.count()
    expired = Authorization.objects.filter(expires_at__lte=now).count()
    print(
        f"data set: {patients:,} patients, {authorizations:,} authorizations across "
        f"{Purpose.objects.count()} purposes ({revoked / authorizations:.1%} revoked, {expired / authorizations:.1%} "
        f"expired), {Suppression.objects.count():,} suppressions"
    )
    # What earlier runs left: their deliveries (and rows that name them). Campaigns and audit events stay.
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE campaigns_delivery CASCADE")
    author, approver, marketer = _staff("hs-author", "marketer"), _staff("hs-approver", "compliance officer"), None
    marketer = _staff("hs-marketer", "marketer")
    purpose = Purpose.objects.get(code=LAUNCH_PURPOSE)
    today = timezone.localdate()
    segment = segment_save(actor=author, name="Adults 40 to 79 seen in the last two years", rules=launch_rules(today))
    warm_segment = segment_save(
        actor=author, name="Warm-up: 65 to 70 in Wisconsin",
        rules={"op": "and", "rules": [{"field": "age", "min": 65, "max": 70}, {"field": "state", "in": ["WI"]}]},
    )

    client = Client()
    client.force_login(marketer)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = TOTPDevice.objects.get(user=marketer).persistent_id
    session.save()
    counts_url = reverse("campaigns:segment_counts")
    purposes = list(Purpose.objects.order_by("id").values_list("id", flat=True))
    requests = count_requests(args.count_requests, purposes)

    context = multiprocessing.get_context("fork")
    reverse("unsubscribe", kwargs={"token": "warm"})  # load the URLconf once, as a long-lived worker has
    from unittest import mock

    results = context.Queue()

    from campaigns.forms.segments import SegmentForm
    from campaigns.segments import segment_queryset
    from campaigns.selectors.count_index import count_index_ready
    from consent.selectors.standing import coverage_standing_counts

    checked = {"equal": 0, "requests": 0}

    def counts_pass(posts: list[dict]) -> list[float]:
        times = []
        for post in posts:
            started = time.perf_counter()
            response = client.post(counts_url, post)
            times.append(time.perf_counter() - started)
            body = response.content.decode()
            assert response.status_code == 200, response.status_code
            assert 'data-count="matched"' in body and "errorlist" not in body, body[:500]
            index = count_index_ready()
            if index is not None:  # untimed: the index's answer against the SQL statement's, on the same data
                form = SegmentForm(post)
                assert form.is_valid() or not form.errors.get("purpose"), form.errors
                purpose_id = form.cleaned_data["purpose"].pk
                year = timezone.localdate().year
                mine = index.counts(rules=form.rules, purpose_id=purpose_id, year=year)
                statement = coverage_standing_counts(purpose_id=purpose_id, patients=segment_queryset(form.rules))
                checked["requests"] += 1
                checked["equal"] += mine == statement
                assert mine == statement, (form.rules, mine, statement)
        return times

    if not args.count_sql:
        # As a web worker does on its first count request: the index loads in the background; the bench waits
        # for it, as the timed requests are those of a worker that has been up for a while.
        started = time.perf_counter()
        count_index_ready()
        while count_index_ready() is None:
            time.sleep(0.1)
        index = count_index_ready()
        print(f"count index (ADR 0022) loaded in {index.load_seconds:.1f} s: {index.patients:,} patients "
              f"(waited {time.perf_counter() - started:.1f} s); load {_load()}", flush=True)

    serial = Campaign.objects.count()

    def launch_pass(label: str, on_segment) -> dict:
        nonlocal serial
        serial += 1
        campaign = campaign_create_draft(
            actor=author, name=f"Diabetes prevention ({label}, {serial})", purpose=purpose, segment=on_segment,
            subject=SUBJECT, body_text=BODY_MERGED if args.merge_field else BODY,
        )
        campaign_submit(actor=author, campaign_id=campaign.pk)
        campaign_approve(actor=approver, campaign_id=campaign.pk)
        connection.close()
        load = _load()
        started = time.perf_counter()
        with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):  # the forked processes below are the workers
            campaign_launch(actor=approver, campaign_id=campaign.pk)
        seconds = time.perf_counter() - started
        statuses = {
            (reason or status): n
            for status, reason, n in Delivery.objects.filter(campaign=campaign)
            .values_list("status", "block_reason")
            .annotate(n=django.db.models.Count("id"))
            .order_by()
        }
        return {"campaign": campaign, "seconds": seconds, "statuses": statuses, "load": load,
                "audience": sum(statuses.values()), "queued": statuses.get("queued", 0)}

    def send_pass(launched: dict) -> dict:
        campaign = launched["campaign"]
        connection.close()
        settings.EMAIL_PORT = sink.start()
        load = _load()
        started = time.perf_counter()
        workers = [context.Process(target=_worker, args=(campaign.pk, results)) for _ in range(args.workers)]
        for worker in workers:
            worker.start()
        done = [results.get() for _ in workers]
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - started
        received = sink.stop()
        campaign_finish_if_done(campaign_id=campaign.pk)
        sent = Delivery.objects.filter(campaign=campaign, status="sent").count()
        assert sent == launched["queued"], f"{sent} sent of {launched['queued']} queued"
        assert received == sent, f"the sink received {received}, the database says {sent} sent"
        return {"seconds": seconds, "sent": sent, "load": load, "cpu": sum(c for _, c, _ in done),
                "pg": sum(p for _, _, p in done)}

    def raw_pass(messages) -> dict:
        load = _load()
        seconds, sent, _ = raw_send(sink=sink, messages=messages, workers=args.workers, context=context, results=results)
        return {"seconds": seconds, "sent": sent, "load": load}

    def post_office_pass(messages_file: Path, count: int) -> dict:
        po_url = recreate_database(args.admin_url, f"{database}_post_office")
        port = sink.start()
        load = _load()
        completed = subprocess.run(
            [str(post_office_python), str(ROOT / "bench" / "post_office_send.py"), str(messages_file),
             "--processes", str(args.post_office_processes)],
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "bench.post_office_settings", "POST_OFFICE_DATABASE_URL": po_url,
                 "POST_OFFICE_EMAIL_PORT": str(port), "POST_OFFICE_BATCH_SIZE": str(args.post_office_batch),
                 "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, cwd=ROOT,
        )
        received = sink.stop()
        if completed.returncode:
            sys.exit(f"post_office run failed:\n{completed.stdout}\n{completed.stderr}")
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        assert result["sent"] == count == received, (result, count, received)
        return {**result, "load": load}

    runs = []
    messages = None
    messages_file = Path(f"/tmp/hipaamail-bench-hs-{os.getpid()}.jsonl")
    try:
        # Warm-up, not counted: PostgreSQL's caches, planner statistics that know deliveries, the sink.
        counts_pass(requests[:3])
        warm = launch_pass("warm-up", warm_segment)
        send_pass(warm)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE campaigns_delivery")
        print(f"warm-up (not counted): 3 counts, a launch of {warm['audience']:,} in "
              f"{warm['seconds']:.2f} s and its {warm['queued']:,} messages sent; load {_load()}", flush=True)
        for repeat in range(1, args.repeats + 1):
            # The --count-requests requests are shared out over the runs (each run its own rules).
            run = {"counts": counts_pass(requests[repeat - 1 :: args.repeats]), "counts_load": _load()}
            run["launch"] = launch_pass(f"run {repeat}", segment)
            run["send"] = send_pass(run["launch"])
            if messages is None:
                messages = _assembled(CampaignRender, Delivery, run["launch"]["campaign"], args.raw_messages)
                with messages_file.open("w") as out:
                    for from_address, to_address, raw in messages:
                        out.write(json.dumps({"from": from_address, "to": to_address, "raw": raw.decode("ascii")}) + "\n")
            run["raw"] = raw_pass(messages)
            if post_office_python is not None:
                run["post_office"] = post_office_pass(messages_file, len(messages))
            runs.append(run)
            _print_run(repeat, run)
    finally:
        sink.stop()
        messages_file.unlink(missing_ok=True)

    if checked["requests"]:
        print(f"\ncounts from the count index equal to the SQL statement's (checked untimed after each request): "
              f"{checked['equal']} of {checked['requests']}")
    return _summary(args, runs, messages, patients)


def _assembled(CampaignRender, Delivery, campaign, limit: int) -> list[tuple[str, str, bytes]]:
    """The first `limit` messages the pipeline sent, assembled as the sender assembles them (pre-rendered bytes),
    their merge values read a thousand deliveries at a time as the sender reads them."""
    from campaigns.content import merge_values_for_deliveries

    render = CampaignRender(campaign=campaign)
    rows = list(
        Delivery.objects.filter(campaign=campaign, status="sent").order_by("id").values_list("id", "patient__email")[:limit]
    )
    messages = []
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        values = merge_values_for_deliveries(
            campaign_id=campaign.pk, delivery_ids=[pk for pk, _ in chunk], fields=render.fields
        )
        for delivery_id, address in chunk:
            assembled = render.assemble(delivery_id=delivery_id, to_address=address, merge_values=values[delivery_id])
            messages.append((assembled.from_address, assembled.to_address, assembled.raw))
    return messages


def _staff(username: str, role: str):
    """A staff member of `role` with a confirmed TOTP device, made once per kept data set."""
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        email = f"{username}@riverside-health.example"
        user = get_user_model().objects.create_user(username=username, email=email, password="bench-only-password")
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    return user


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def _print_run(repeat: int, run: dict) -> None:
    counts, launch, send, raw = run["counts"], run["launch"], run["send"], run["raw"]
    rate = send["sent"] / send["seconds"]
    raw_rate = raw["sent"] / raw["seconds"]
    line = (
        f"run {repeat}: counts p50 {_percentile(counts, 0.5) * 1000:.0f} ms, p95 {_percentile(counts, 0.95) * 1000:.0f} ms, "
        f"max {max(counts) * 1000:.0f} ms (load {run['counts_load']})\n"
        f"       launch {launch['seconds']:.2f} s: {launch['audience']:,} deliveries, {launch['queued']:,} queued, "
        f"blocked {', '.join(f'{k} {v:,}' for k, v in sorted(launch['statuses'].items()) if k != 'queued') or 'none'} "
        f"(load {launch['load']})\n"
        f"       send {send['seconds']:.2f} s, {rate:,.0f} msgs/s (CPU µs/msg sender {send['cpu'] / send['sent'] * 1e6:,.0f} "
        f"+ its postgres {send['pg'] / send['sent'] * 1e6:,.0f}; load {send['load']}); raw smtplib {raw_rate:,.0f} msgs/s "
        f"(load {raw['load']}); send / raw {rate / raw_rate:.2f}"
    )
    if "post_office" in run:
        po = run["post_office"]
        po_rate = po["sent"] / (po["queue_seconds"] + po["send_seconds"])
        line += (
            f"\n       post_office queue {po['queue_seconds']:.2f} s + send {po['send_seconds']:.2f} s: {po_rate:,.0f} msgs/s "
            f"(send alone {po['sent'] / po['send_seconds']:,.0f}; load {po['load']}); hipaamail / post_office "
            f"{_with_launch(run) / po_rate:.2f} (launch + send against queue + send; send alone against send alone "
            f"{rate / (po['sent'] / po['send_seconds']):.2f})"
        )
    print(line, flush=True)


def _with_launch(run: dict) -> float:
    """hipaamail's rate counting the launch as well as the send (as post_office's counts its queueing)."""
    return run["send"]["sent"] / (run["launch"]["seconds"] + run["send"]["seconds"])


def _spread(label: str, values: list[float], unit: str, scale: float = 1.0, fmt: str = ",.0f") -> float:
    median = statistics.median(values)
    print(
        f"{label}: {' · '.join(format(v * scale, fmt) for v in values)} {unit}; median {format(median * scale, fmt)}, "
        f"spread {format(min(values) * scale, fmt)}–{format(max(values) * scale, fmt)}"
        + (f" ({(max(values) - min(values)) / median:.0%})" if median else "")
    )
    return median


def _summary(args, runs: list[dict], messages, patients: int) -> int:
    print()
    size = sum(len(raw) for _, _, raw in messages) / len(messages)
    print(
        f"{patients:,} patients; launch audience {runs[0]['launch']['audience']:,} ({runs[0]['launch']['queued']:,} "
        f"queued); {args.workers} sender processes, batches of {args.batch_size}; messages {size / 1024:.1f} KB; "
        f"raw and post_office over the first {len(messages):,} of them"
    )
    all_counts = [t for run in runs for t in run["counts"]]
    p95 = _percentile(all_counts, 0.95)
    print(
        f"counts over {len(all_counts)} requests: p50 {_percentile(all_counts, 0.5) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {max(all_counts) * 1000:.0f} ms; per run p95 "
        + " · ".join(f"{_percentile(run['counts'], 0.95) * 1000:.0f}" for run in runs) + " ms"
    )
    launches = [run["launch"]["seconds"] for run in runs]
    _spread("launch", launches, "s", fmt=".2f")
    send_rates = [run["send"]["sent"] / run["send"]["seconds"] for run in runs]
    raw_rates = [run["raw"]["sent"] / run["raw"]["seconds"] for run in runs]
    _spread("send (the one sender)", send_rates, "msgs/s")
    _spread("raw smtplib", raw_rates, "msgs/s")
    raw_ratios = [s / r for s, r in zip(send_rates, raw_rates)]
    raw_ratio = _spread("send / raw (same run)", raw_ratios, "", fmt=".2f")
    po_ratio = None
    if all("post_office" in run for run in runs):
        po_rates = [
            run["post_office"]["sent"] / (run["post_office"]["queue_seconds"] + run["post_office"]["send_seconds"])
            for run in runs
        ]
        _spread(f"post_office ({args.post_office_processes} processes, batch {args.post_office_batch}, 1 thread), queue + send",
                po_rates, "msgs/s")
        _spread("hipaamail, launch + send", [_with_launch(run) for run in runs], "msgs/s")
        po_ratio = _spread(
            "hipaamail (launch + send) / post_office (queue + send), same run",
            [_with_launch(run) / p for run, p in zip(runs, po_rates)], "", fmt=".2f",
        )
        _spread(
            "hipaamail send / post_office send_queued_mail alone, same run",
            [s / (run["post_office"]["sent"] / run["post_office"]["send_seconds"]) for s, run in zip(send_rates, runs)],
            "", fmt=".2f",
        )
    targets = [
        (f"launch under {args.max_launch:g} s in every run (slowest {max(launches):.2f} s)", max(launches) < args.max_launch),
        (f"counts p95 under {args.max_p95 * 1000:.0f} ms ({p95 * 1000:.0f} ms)", p95 < args.max_p95),
        (f"send / raw at least {args.min_raw_ratio:g} (median {raw_ratio:.2f})", raw_ratio >= args.min_raw_ratio),
    ]
    if po_ratio is not None:
        targets.append(
            (f"hipaamail / post_office at least {args.min_post_office_ratio:g} (median {po_ratio:.2f})",
             po_ratio >= args.min_post_office_ratio)
        )
    for label, met in targets:
        print(f"target: {label}: {'MET' if met else 'NOT MET'}")
    return 0 if all(met for _, met in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
