#!/usr/bin/env python
"""Benchmark (issue 11, item 5): audit_verify holding every delivery against its sealed batch record, at 1,000,000
deliveries on PostgreSQL. Target: seconds, not minutes.

    .venv/bin/python bench/delivery_verify.py [--deliveries 1000000] [--runs 3] [--explain]
    .venv/bin/python bench/delivery_verify.py --reuse        # measure again without regenerating

It (re)creates the database `hipaamail_bench_deliveries` (drops it first), migrates it with the test settings and
loads, with COPY and the triggers and foreign keys off for the load (`session_replication_role = replica`,
superuser, this database only): N deliveries in campaigns of 10,000 (90% sent, 7% blocked by the sender as
revoked, 1% refused by the mail server, 2% blocked at launch), and their send batches as the sender writes them —
one `delivery.batch_dispatched` event per 200 deliveries, with each sent delivery's authorization and send time —
among four other events per batch, every event sealed (the chain computed here with audit.chain, as the sealer
would). The deliveries' campaigns, patients and authorizations are not created: the comparison reads neither.

Then it measures, `--runs` times: the comparison alone (campaigns.delivery_verification.deliveries_verify, what
audit_verify runs after the walk), and the whole verify (audit.services.audit_chain_verify: the walk in stretches,
then the comparison); then forges one delivery (a blocked one made sent, back-dated) and shows it is named.
"""
import argparse
import hashlib
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "hipaamail_bench_deliveries"
BATCH = 200
CAMPAIGN_SIZE = 10_000
OTHER_EVENTS_PER_BATCH = 4
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def recreate_database(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    return admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _copy_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def generate(count: int):
    """Yield (delivery COPY lines, event COPY lines) per batch of BATCH deliveries."""
    from audit import chain

    previous = chain.GENESIS
    sequence = 0
    prefix = chain.VERSION + b"\t"
    for first in range(1, count + 1, BATCH):
        ids = range(first, min(first + BATCH, count + 1))
        campaign = 1 + (first - 1) // CAMPAIGN_SIZE
        checked_at = START + timedelta(seconds=(first - 1) // BATCH * 2, microseconds=123)
        deliveries, details = [], {"checked_at": _stamp(checked_at), "sent": [], "sent_authorization": [], "sent_at": []}
        blocked, failed = [], []
        for offset, pk in enumerate(ids):
            kind = pk % 100
            created = _copy_time(START)
            if kind < 90:
                sent_at = checked_at + timedelta(microseconds=2_000 * (offset + 1))
                details["sent"].append(pk)
                details["sent_authorization"].append(pk)
                details["sent_at"].append(_stamp(sent_at))
                row = ("sent", "", f"<{pk}@bench.invalid>", _copy_time(checked_at), _copy_time(sent_at), str(pk), "\\N", "")
            elif kind < 97:
                blocked.append(pk)
                row = ("blocked", "revoked", "", "\\N", "\\N", "\\N", "\\N", "")
            elif kind < 98:
                failed.append(pk)
                row = ("failed", "", "", "\\N", "\\N", "\\N", "550", "smtp 550")
            else:  # blocked at launch: in no batch
                row = ("blocked", "no_authorization", "", "\\N", "\\N", "\\N", "\\N", "")
            status, reason, message_id, checked, sent, authorization, code, error = row
            deliveries.append(
                f"{pk}\t{campaign}\t{pk}\t{status}\t{reason}\t{message_id}\t{checked}\t{sent}\t{authorization}"
                f"\t{code}\t{error}\t0\tf\t\t{created}\n".encode()
            )
        if blocked:
            details["blocked_revoked"] = blocked
        if failed:
            details["failed"] = failed
        events = []
        moment = checked_at + timedelta(milliseconds=500)
        others = [
            ("patient.viewed", "patient", str(first), first, {"authorization_ids": [first]}),
            ("authorization.granted", "authorization", str(first), first, {"purpose": "cpap-supplies"}),
            ("account.signed_in", "user", "1", None, {}),
            ("delivery.bounced", "delivery", str(first), first, {"kind": "hard"}),
        ][:OTHER_EVENTS_PER_BATCH]
        for action, object_type, object_id, patient_id, payload in [
            ("delivery.batch_dispatched", "campaign", str(campaign), None, details), *others
        ]:
            sequence += 1
            content = chain.content_text(
                occurred_at=moment, actor_id=None, actor_role="system", action=action, object_type=object_type,
                object_id=object_id, patient_id=patient_id, ip=None, request_id="", details=payload,
            )
            digest = hashlib.sha256(prefix + b"%d\t%s\t%s" % (sequence, content, previous.encode())).hexdigest()
            events.append(b"%s\t%d\t%s\t%s\n" % (content, sequence, previous.encode(), digest.encode()))
            previous = digest
            moment += timedelta(microseconds=10)
        yield deliveries, events


def load(count: int) -> None:
    from django.db import connection, transaction

    from audit import chain

    started = time.perf_counter()
    delivery_columns = (
        "id, campaign_id, patient_id, status, block_reason, message_id, checked_at, sent_at, authorization_id,"
        " smtp_code, error, attempts, possible_duplicate, bounce_type, created_at"
    )
    event_columns = ", ".join((*chain.CONTENT_COLUMNS, "sequence", "prev_hash", "hash"))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")  # the bench's load only: triggers off
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        batches = list(generate(count))
        with cursor.cursor.copy(f"COPY campaigns_delivery ({delivery_columns}) FROM STDIN") as copy:
            for deliveries, _ in batches:
                copy.write(b"".join(deliveries))
        with cursor.cursor.copy(f"COPY audit_auditevent ({event_columns}) FROM STDIN") as copy:
            for _, events in batches:
                copy.write(b"".join(events))
        cursor.execute("SELECT setval(pg_get_serial_sequence('campaigns_delivery', 'id'), %s)", [count])
        cursor.execute("SELECT setval(pg_get_serial_sequence('audit_auditevent', 'id'), (SELECT max(id) FROM audit_auditevent))")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE campaigns_delivery")
        cursor.execute("VACUUM ANALYZE audit_auditevent")
    print(f"loaded {count:,} deliveries and {len(batches) * (1 + OTHER_EVENTS_PER_BATCH):,} sealed events "
          f"in {time.perf_counter() - started:.0f}s")


def measure(runs: int, explain: bool) -> None:
    from django.db import connection, transaction

    from audit.models import AuditEvent
    from audit.services import audit_chain_verify
    from campaigns import delivery_verification

    head = AuditEvent.objects.exclude(sequence=None).order_by("-sequence").values_list("sequence", flat=True)[0]
    for run in range(1, runs + 1):
        started = time.perf_counter()
        result = delivery_verification.deliveries_verify(through_sequence=head)
        seconds = time.perf_counter() - started
        print(f"  comparison, run {run}: {result.compared:,} deliveries against {result.count('records'):,} sealed "
              f"records in {seconds:.2f}s ({result.compared / seconds:,.0f} deliveries/s), {result.mismatches} mismatches")
        assert result.mismatches == 0, result.lines()
    for run in range(1, runs + 1):
        verification = audit_chain_verify(read_only=True)
        print(f"  whole verify, run {run}: walk {verification.result.events:,} events in {verification.seconds:.2f}s, "
              f"then the comparison in {verification.checks_seconds:.2f}s; ok={verification.ok}")
    if explain:
        params = {"action": delivery_verification.BATCH_ACTION, "after": 0, "through": head, "since": None}
        with connection.cursor() as cursor:
            cursor.execute("SET work_mem = '256MB'")
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + delivery_verification._COUNTS_SQL, params)
            print("\n".join(row[0] for row in cursor.fetchall()))
    # One forgery: the first delivery the sender blocked, made sent and back-dated (foreign keys off: the bench
    # has no authorization rows).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "UPDATE campaigns_delivery SET status = 'sent', block_reason = '', authorization_id = id,"
            " checked_at = %s, sent_at = %s WHERE id = (SELECT min(id) FROM campaigns_delivery"
            " WHERE block_reason = 'revoked') RETURNING id",
            [START - timedelta(days=1), START - timedelta(days=1)],
        )
        forged = cursor.fetchone()[0]
    started = time.perf_counter()
    result = delivery_verification.deliveries_verify(through_sequence=head)
    print(f"  after forging delivery {forged}: {result.mismatches} mismatch in {time.perf_counter() - started:.2f}s: "
          f"{'; '.join(result.lines())}")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_delivery SET status = 'blocked', block_reason = 'revoked', authorization_id = NULL,"
            " checked_at = NULL, sent_at = NULL WHERE id = %s", [forged]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--explain", action="store_true", help="print the comparison's plan with its timings")
    parser.add_argument("--reuse", action="store_true", help="measure the existing database again")
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    if args.reuse:
        os.environ["DATABASE_URL"] = args.admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"
    else:
        os.environ["DATABASE_URL"] = recreate_database(args.admin_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hipaamail.settings.test"
    os.environ.pop("CELERY_BROKER_URL", None)
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.WARNING)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not args.reuse:
        load(args.deliveries)
    print(f"audit_verify's delivery comparison ({os.cpu_count()} CPUs):")
    measure(args.runs, args.explain)


if __name__ == "__main__":
    main()
