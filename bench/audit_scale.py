#!/usr/bin/env python
"""Benchmark (issue 6, item 6): the audit trail at 5,000,000 events on PostgreSQL. Targets: an audit page at any
depth and with any one filter under 50 ms at the 95th percentile; audit_verify at 200,000 events/s or more.

    .venv/bin/python bench/audit_scale.py [--events 5000000] [--samples 200] [--verify-runs 2]
    .venv/bin/python bench/audit_scale.py --reuse        # measure again without regenerating

It (re)creates the database `hipaamail_bench_audit` (drops it first), migrates it with the test settings, creates
40 staff users, and loads N synthetic events spread over two years with one COPY, each already sealed: the
bench computes the chain in Python (audit.chain, the same encoding the sealer uses) as it writes the COPY
stream, with the append-only triggers bypassed for the load (`session_replication_role = replica`, superuser,
this database only) and the secondary indexes built after the load. Events look like the product's: patient
views and searches by staff, authorizations granted and revoked by patients, sign-in codes, campaign changes,
one send-batch event (200 delivery ids) per 50 events, bounces; about 500,000 patients, 2,000 campaigns.

Then it prewarms the table and its indexes into the OS cache (pg_prewarm) and measures, `--samples` times per
case, at a random depth (continuing from a random matching event with `before=`): the audit log unfiltered and
with each single filter (actor, action, patient, campaign, a 7-day date range), the first page, and the patient
history page — each both as the selector call the view makes (`audit_event_page`) and as the whole page through
Django's test client as a signed-in compliance officer (middleware, second factor, template and all); plus the
simplest staff page as a baseline. It prints p50, p95 and max. Then audit_verify's walk
(`audit.selectors.audit_chain_walk`, what `manage.py audit_verify` runs), `--verify-runs` times, in events/s;
and, for comparison, the same rows fetched through a named (server-side) cursor into Python tuples.
"""
import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "hipaamail_bench_audit"
SPAN = timedelta(days=730)
START = datetime(2024, 12, 1, tzinfo=UTC)
STAFF = 40
PATIENTS = 500_000
CAMPAIGNS = 2_000

# (action, weight, actor kind, object type, subject?) — actor kind: staff, patient, system.
ACTIONS = [
    ("patient.viewed", 16, "staff", "patient", True),
    ("patient.searched", 4, "staff", "patient", True),
    ("patient.document_downloaded", 2, "staff", "authorization", True),
    ("authorization.granted", 12, "patient", "authorization", True),
    ("authorization.revoked", 3, "patient", "patient", True),
    ("authorization.pdf_downloaded", 3, "patient", "authorization", True),
    ("authorization.fhir_exported", 1, "staff", "authorization", True),
    ("patient.code_sent", 10, "patient", "patient", True),
    ("patient.email_proven", 8, "patient", "patient", True),
    ("invitation.created", 5, "staff", "invitation", True),
    ("unsubscribe.viewed", 3, "patient", "delivery", True),
    ("delivery.bounced", 2, "system", "delivery", True),
    ("delivery.batch_dispatched", 2, "system", "campaign", False),
    ("campaign.updated", 2, "staff", "campaign", False),
    ("campaign.evidence_viewed", 1, "staff", "campaign", False),
    ("campaign.approved", 1, "staff", "campaign", False),
    ("campaign.launched", 1, "staff", "campaign", False),
    ("account.signed_in", 6, "staff", "user", False),
    ("account.sign_in_failed", 1, "anonymous", "", False),
    ("mfa.verified", 5, "staff", "user", False),
    ("segment.saved", 2, "staff", "segment", False),
    ("report.exported", 1, "staff", "campaign", False),
]
ROLES = {"staff": ["compliance officer", "marketer", "administrator"], "patient": ["patient"],
         "system": ["system"], "anonymous": ["anonymous"]}


def recreate_database(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    return admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"


def _details(rng: random.Random, action: str, n: int) -> dict:
    if action == "delivery.batch_dispatched":
        first = n * 3
        return {"sent": list(range(first, first + 196)), "blocked_revoked": [first + 196, first + 197],
                "blocked_no_authorization": [first + 198, first + 199]}
    if action == "patient.viewed":
        return {"authorization_ids": [rng.randrange(1, 900_000) for _ in range(rng.randrange(1, 4))]}
    if action == "authorization.granted":
        return {"purpose": "cpap-supplies", "channel": "web"}  # the patient is the patient_id column
    if action == "delivery.bounced":
        return {"kind": "hard", "status": "5.1.1", "source": "dsn", "campaign_id": rng.randrange(1, CAMPAIGNS)}
    if action == "campaign.updated":
        return {"changed": ["subject", "body_text"], "purpose": rng.randrange(1, 40), "segment": rng.randrange(1, 200)}
    return {"n": n % 1000} if n % 3 else {}


def events_generate(count: int, staff_ids: list[int], *, seed: int = 6):
    """Yield COPY lines (bytes) of `count` sealed events, in sequence order, chained with audit.chain."""
    from audit import chain

    rng = random.Random(seed)
    names = [a[0] for a in ACTIONS]
    weights = [a[1] for a in ACTIONS]
    spec = {a[0]: a for a in ACTIONS}
    step = SPAN / count
    previous = chain.GENESIS
    prefix = chain.VERSION + b"\t"
    import hashlib

    sha256 = hashlib.sha256
    picks = rng.choices(names, weights=weights, k=count)
    for index in range(count):
        sequence = index + 1
        action = picks[index]
        _, _, kind, object_type, subject = spec[action]
        moment = START + step * index + timedelta(microseconds=rng.randrange(0, 999_999))
        actor_id = rng.choice(staff_ids) if kind == "staff" else None
        role = rng.choice(ROLES[kind])
        patient_id = rng.randrange(1, PATIENTS) if subject else None
        if object_type == "patient":
            object_id = str(patient_id)
        elif object_type == "campaign":
            object_id = str(rng.randrange(1, CAMPAIGNS))
        elif object_type == "user":
            object_id = str(actor_id or "")
        elif object_type:
            object_id = str(rng.randrange(1, 2_000_000))
        else:
            object_id = ""
        ip = f"10.{index % 200}.{(index // 200) % 250}.{index % 7 + 1}" if kind != "system" else None
        request_id = "" if kind == "system" else f"{rng.getrandbits(128):032x}"
        content = chain.content_text(
            occurred_at=moment, actor_id=actor_id, actor_role=role, action=action, object_type=object_type,
            object_id=object_id, patient_id=patient_id, ip=ip, request_id=request_id,
            details=_details(rng, action, index),
        )
        body = b"%d\t%s\t%s" % (sequence, content, previous.encode())
        digest = sha256(prefix + body).hexdigest()
        yield b"%s\t%d\t%s\t%s\n" % (content, sequence, previous.encode(), digest.encode())
        previous = digest


def load(count: int) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection, transaction

    from audit import chain

    users = []
    for role in ("compliance officer", "marketer", "administrator"):
        Group.objects.get_or_create(name=role)
    for n in range(STAFF):
        user = get_user_model().objects.create_user(
            username=f"staff{n}", email=f"staff{n}@riverside-health.example", password="not-used-here-1"
        )
        user.groups.add(Group.objects.get(name=("compliance officer", "marketer", "administrator")[n % 3]))
        users.append(user.pk)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_auditevent'"
            " AND indexname NOT IN ('audit_auditevent_pkey', 'audit_auditevent_sequence_key')"
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET LOCAL session_replication_role = replica")  # the bench's load only: triggers off
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        columns = ", ".join((*chain.CONTENT_COLUMNS, "sequence", "prev_hash", "hash"))
        with cursor.cursor.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy:
            buffer = []
            for n, line in enumerate(events_generate(count, users), start=1):
                buffer.append(line)
                if len(buffer) == 20_000:
                    copy.write(b"".join(buffer))
                    buffer.clear()
                if n % 1_000_000 == 0:
                    print(f"  {n:,} events generated and sent ({time.perf_counter() - started:.0f}s)", flush=True)
            copy.write(b"".join(buffer))
        loaded = time.perf_counter() - started
        for _, definition in indexes:
            cursor.execute(definition)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_auditevent")
    print(f"loaded {count:,} sealed events in {loaded:.0f}s; indexes and VACUUM ANALYZE: "
          f"{time.perf_counter() - started - loaded:.0f}s")


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(round(0.95 * len(ordered))) - 1)]
    return f"p50 {statistics.median(ordered):5.1f}  p95 {p95:5.1f}  max {ordered[-1]:6.1f} ms"


def pages_measure(samples: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from audit import selectors
    from audit.models import AuditEvent

    officer = get_user_model().objects.filter(groups__name="compliance officer").order_by("id").first()
    device = TOTPDevice.objects.get_or_create(user=officer, name="bench", defaults={"confirmed": True})[0]
    client = Client()
    client.force_login(officer)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM audit_auditevent")
        low, high = cursor.fetchone()
    rng = random.Random(7)

    def random_event(**where):
        while True:
            event = AuditEvent.objects.filter(pk=rng.randrange(low, high + 1), **where).first()
            if event is not None:
                return event

    def case(kind: str) -> tuple[str, object]:
        """A URL of that kind at a random depth, and the selector call the view makes for it."""
        if kind == "first-page":
            return "/audit/", lambda: selectors.audit_event_page(selectors.AuditFilters())
        if kind == "history":
            patient_id = random_event(patient_id__isnull=False).patient_id
            return f"/audit/patients/{patient_id}/", lambda: selectors.audit_patient_history(patient_id)
        event = random_event(**({"actor__isnull": False} if kind == "actor" else
                                {"patient_id__isnull": False} if kind == "patient" else
                                {"object_type": "campaign"} if kind == "campaign" else {}))
        params, filters = {"before": event.pk}, {}
        if kind == "actor":
            params["actor"] = filters["actor_id"] = event.actor_id
        elif kind == "action":
            params["action"] = filters["action"] = event.action
        elif kind == "patient":
            params["patient"] = filters["patient_id"] = event.patient_id
        elif kind == "campaign":
            params["campaign"] = filters["campaign_id"] = int(event.object_id)
        elif kind == "dates":
            day = event.occurred_at.date()
            filters = {"start": day - timedelta(days=3), "end": day + timedelta(days=3)}
            params |= {key: value.isoformat() for key, value in filters.items()}
        url = "/audit/?" + "&".join(f"{key}={value}" for key, value in params.items())
        return url, lambda: selectors.audit_event_page(selectors.AuditFilters(**filters), before=event.pk)

    # Read the table and its indexes once, as a server with this working set (3 GB) keeps it in memory; without
    # it every sample at a random depth reads its 50 rows' heap pages from disk (pg_prewarm, PostgreSQL contrib).
    with connection.cursor() as cursor:
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            cursor.execute(
                "SELECT sum(pg_prewarm(c.oid::regclass, 'read')) FROM pg_class c"
                " WHERE c.relname LIKE 'audit_auditevent%' OR c.relname LIKE 'audit_event_%'"
            )
            print(f"  prewarmed {cursor.fetchone()[0] * 8 // 1024:,} MB (table and indexes) into the OS cache")
        except Exception as error:  # no contrib: measure cold, and say so
            print(f"  pg_prewarm unavailable ({type(error).__name__}): the numbers include cold reads")
    client.get("/audit/")  # warm the URLconf, templates and caches
    client.get("/account/two-factor/devices/")
    print(f"  {'case':<11} {'the page query (selector, keyset, actor joined)':<52} the whole page (test client)")
    for kind in ("none", "actor", "action", "patient", "campaign", "dates", "first-page", "history", "baseline"):
        query_times, page_times = [], []
        for _ in range(samples):
            if kind == "baseline":  # the simplest staff page: what any page costs before its own work
                url, select = "/account/two-factor/devices/", None
            else:
                url, select = case(kind)
            if select is not None:
                started = time.perf_counter()
                page = select()
                query_times.append((time.perf_counter() - started) * 1000)
                assert kind != "first-page" or page.events
            started = time.perf_counter()
            response = client.get(url)
            page_times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        query = _percentiles(query_times) if query_times else "—"
        print(f"  {kind:<11} {query:<52} {_percentiles(page_times)}")


def verify_measure(runs: int) -> None:
    from django.db import connection, transaction

    from audit import selectors

    for run in range(1, runs + 1):
        started = time.perf_counter()
        result = selectors.audit_chain_walk()
        seconds = time.perf_counter() - started
        assert result.ok, result.first_break.describe()
        print(f"  audit_verify walk, run {run}: {result.events:,} events in {seconds:.2f}s, "
              f"{result.events / seconds:,.0f} events/s")
    # For comparison: the same columns through a named (server-side) cursor into Python tuples, no hashing.
    columns = "sequence, occurred_at, actor_id, actor_role, action, object_type, object_id, patient_id, ip, " \
              "request_id, details, prev_hash, hash"
    with transaction.atomic():
        connection.ensure_connection()
        with connection.connection.cursor(name="bench_walk") as cursor:
            started = time.perf_counter()
            cursor.execute(f"SELECT {columns} FROM audit_auditevent WHERE sequence IS NOT NULL ORDER BY sequence")
            count = 0
            while rows := cursor.fetchmany(20_000):
                count += len(rows)
            seconds = time.perf_counter() - started
    print(f"  named cursor, fetch only (no hashing): {count:,} rows in {seconds:.2f}s, {count / seconds:,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--verify-runs", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="measure the existing database again")
    parser.add_argument("--skip-pages", action="store_true")
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
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)  # with --reuse too: the code measured may have a newer schema
    if not args.reuse:
        load(args.events)
    from audit.models import AuditEvent

    print(f"events: {AuditEvent.objects.count():,}")
    if not args.skip_pages:
        print(f"audit pages (Django test client, {args.samples} samples each, random depth):")
        pages_measure(args.samples)
    print("audit_verify:")
    verify_measure(args.verify_runs)
    print(json.dumps({"machine": os.uname().nodename, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
