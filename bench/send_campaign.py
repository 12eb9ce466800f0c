"""Campaign send benchmark (issue 5, item 7): a 20,000-recipient campaign through the whole pipeline into smtp-sink.

    .venv/bin/python bench/send_campaign.py [--patients 20000] [--workers 2]

Creates (dropping it first) the database `hipaamail_bench_send`, imports synthetic patients with the import
service (COPY), grants each a marketing authorization (bulk), creates and approves a campaign, then times:

- pipeline: `campaign_launch` (deliveries materialised) and N worker processes each calling the one sender,
  `delivery_dispatch_batch`, until nothing is queued: claim under lease, consent re-check under lock, render once
  per batch, assemble, SMTP (the smtp transport, one connection per batch), record, audit;
- raw: smtplib sending the same assembled messages (pre-rendered bytes) over N connections from N processes.

Both into Debian postfix's `smtp-sink` on a free loopback port. Prints both rates and their ratio.
"""
import argparse
import multiprocessing
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "hipaamail_bench_send"
BODY_PARAGRAPH = (
    "This autumn our clinics offer longer opening hours for flu vaccination, with walk-in sessions on Saturday "
    "mornings and a reminder service by email. Bring your insurance card; the vaccination takes ten minutes. "
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def recreate_database(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    return admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"


def _worker(campaign_id: int, results) -> None:
    from django.db import connection

    from campaigns import services

    connection.close()  # a fresh connection per process
    claimed = 0
    while True:
        try:
            n = services.delivery_dispatch_batch(campaign_id=campaign_id)
        except services.TransientSendError:
            time.sleep(0.05)
            continue
        if not n:
            break
        claimed += n
    results.put(claimed)


def _raw_sender(port: int, messages: list[tuple[str, str, bytes]], results) -> None:
    smtp = smtplib.SMTP("127.0.0.1", port)
    smtp.ehlo()
    for from_address, to_address, raw in messages:
        smtp.sendmail(from_address, [to_address], raw)
    smtp.quit()
    results.put(len(messages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    sink_binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink_binary).exists():
        sys.exit("smtp-sink not found: apt-get install -y postfix")

    os.environ["DATABASE_URL"] = recreate_database(args.admin_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hipaamail.settings.test"
    os.environ.pop("CELERY_BROKER_URL", None)
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.WARNING)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from bench.import_patients import synthetic_csv
    from campaigns import services
    from campaigns.messages import CampaignRender
    from campaigns.models import Campaign, Delivery
    from consent.models import Authorization, Patient, Purpose
    from consent.services import imports
    from hipaamail.tests.factories import staff_make

    call_command("migrate", verbosity=0)
    port = free_port()
    settings.HIPAAMAIL_TRANSPORT = "smtp"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.HIPAAMAIL_SEND_BATCH_SIZE = args.batch_size
    settings.HIPAAMAIL_RATE_LIMIT = 0

    started = time.perf_counter()
    validation = imports.patient_csv_validate(text=synthetic_csv(args.patients))
    with transaction.atomic():
        imports.patient_rows_write(rows=validation.rows)
    purpose = Purpose.objects.create(code="bench-marketing", name="Seasonal health news", kind="marketing")
    now = timezone.now()
    Authorization.objects.bulk_create(
        [
            Authorization(patient_id=pid, purpose=purpose, signed_at=now - timedelta(days=1), expires_at=now + timedelta(days=365))
            for pid in Patient.objects.values_list("id", flat=True)
        ],
        batch_size=5000,
    )
    author, approver = staff_make(role="marketer"), staff_make(role="compliance officer")
    campaign = services.campaign_create(
        actor=author, name="Flu season", purpose=purpose, subject="Flu vaccination: longer hours this autumn",
        body_text="Dear patient,\n\n" + "\n\n".join([BODY_PARAGRAPH * 2] * 4) + "\n\nYour care team",
    )
    services.campaign_submit(actor=author, campaign_id=campaign.pk)
    services.campaign_approve(actor=approver, campaign_id=campaign.pk)
    # Planner statistics, as autovacuum would have them for tables this size: without them the planner guesses
    # a handful of authorizations per purpose and scans all of them for each batch's consent check.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"setup: {args.patients:,} covered patients, approved campaign, in {time.perf_counter() - started:.1f}s")

    sink = subprocess.Popen([sink_binary, "-u", "root", f"127.0.0.1:{port}", "1000"])
    time.sleep(0.3)
    context = multiprocessing.get_context("fork")
    from django.urls import reverse

    reverse("unsubscribe", kwargs={"token": "warm"})  # load the URLconf once, as a long-lived worker has
    try:
        # The pipeline, launch included.
        from unittest import mock

        connection.close()
        started = time.perf_counter()
        with mock.patch("campaigns.services._wake_dispatch"):  # these processes are the workers
            services.campaign_launch(actor=approver, campaign_id=campaign.pk)
        launched = time.perf_counter() - started
        connection.close()
        results = context.Queue()
        workers = [context.Process(target=_worker, args=(campaign.pk, results)) for _ in range(args.workers)]
        for worker in workers:
            worker.start()
        claimed = sum(results.get() for _ in workers)
        for worker in workers:
            worker.join()
        pipeline_seconds = time.perf_counter() - started
        services.campaign_finish_if_done(campaign_id=campaign.pk)
        sent = Delivery.objects.filter(campaign=campaign, status="sent").count()
        status = Campaign.objects.get(pk=campaign.pk).status
        assert sent == args.patients, f"only {sent} sent"

        # The baseline: the same messages, pre-rendered, raw smtplib over the same number of connections.
        render = CampaignRender(campaign=campaign)
        rows = list(Delivery.objects.filter(campaign=campaign).order_by("id").values_list("id", "patient__email"))
        messages = []
        for delivery_id, address in rows:
            assembled = render.assemble(delivery_id=delivery_id, to_address=address)
            messages.append((assembled.from_address, assembled.to_address, assembled.raw))
        size = sum(len(raw) for _, _, raw in messages) / len(messages)
        connection.close()
        started = time.perf_counter()
        senders = [
            context.Process(target=_raw_sender, args=(port, messages[i :: args.workers], results))
            for i in range(args.workers)
        ]
        for sender in senders:
            sender.start()
        raw_sent = sum(results.get() for _ in senders)
        for sender in senders:
            sender.join()
        raw_seconds = time.perf_counter() - started
    finally:
        sink.terminate()
        sink.wait()

    pipeline_rate, raw_rate = sent / pipeline_seconds, raw_sent / raw_seconds
    print(f"messages: {sent:,} of {size / 1024:.1f} KB average; {args.workers} workers, batches of {args.batch_size}")
    print(f"pipeline (launch {launched:.2f}s + claim, re-check under lock, render, SMTP, record, audit): "
          f"{pipeline_seconds:.2f}s, {pipeline_rate:,.0f} msgs/s (claimed {claimed:,}; campaign {status})")
    print(f"  of which dispatch alone (workers): {pipeline_seconds - launched:.2f}s, "
          f"{sent / (pipeline_seconds - launched):,.0f} msgs/s")
    print(f"raw smtplib, pre-rendered bytes, {args.workers} connections: {raw_seconds:.2f}s, {raw_rate:,.0f} msgs/s")
    print(f"ratio pipeline / raw: {pipeline_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
