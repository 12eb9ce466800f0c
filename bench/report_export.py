#!/usr/bin/env python
"""Benchmark (issue 6, item 6): a 1,000,000-row CSV export of the campaign evidence report, streamed, on
PostgreSQL. Targets: 50,000 rows per second or more, peak memory under 150 MB.

    .venv/bin/python bench/report_export.py [--rows 1000000] [--runs 3] [--admin-url postgres://postgres@127.0.0.1:5432/postgres]

It (re)creates the database `hipaamail_bench_reports` (drops it first), migrates it, and fills it with SQL
(INSERT … SELECT generate_series, seconds rather than minutes): N synthetic patients, an authorization under a
published form version for 95% of them, one campaign with a delivery per patient (sent under the
authorization, or blocked "no authorization" for the other 5%), 1% of the sent ones revoked afterwards by
one-click unsubscribe, 0.5% bounced. No real person: the identifier columns hold placeholders.

Each run is a fresh Python process (so its peak RSS is the export's, not the set-up's) that does what the
export view does after the second factor: `report_export_start` (audits the export, reads the chain head),
`campaign_evidence_csv`, then iterates the StreamingHttpResponse as a WSGI server would, counting bytes and
rows and writing nothing. It prints rows/s and the process's peak RSS (`resource.getrusage`, ru_maxrss), and
the RSS right before the export began, so the export's own share is visible. A baseline in the same run:
psycopg's COPY (SELECT … the same columns and joins) TO STDOUT, the fastest the database hands the rows over.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "hipaamail_bench_reports"


def recreate_database(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    return admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"


def _django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "hipaamail.settings.test"
    os.environ.pop("CELERY_BROKER_URL", None)
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.WARNING)
    import django

    django.setup()


def insert_select(model, values: dict[str, object], source: str, params: list | None = None) -> int:
    """INSERT INTO model's table SELECT … FROM source: `values` maps column names to SQL expressions (a string
    without parameters, or (expression, [parameters])); every other concrete column gets the model field's
    default, so this keeps working when fields are added. `params` are the source's."""
    from django.db import connection

    columns, expressions, select_params = [], [], []
    for field in model._meta.concrete_fields:
        if field.column in values:
            value = values[field.column]
            expression, value_params = value if isinstance(value, tuple) else (value, [])
            columns.append(field.column)
            expressions.append(expression)
            select_params.extend(value_params)
        elif not field.primary_key:
            columns.append(field.column)
            expressions.append("%s")
            select_params.append(field.get_db_prep_save(field.get_default(), connection))
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT {', '.join(expressions)} FROM {source}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, select_params + (params or []))
        return cursor.rowcount


def populate(rows: int) -> dict:
    """Set-up with SQL, not timed. Returns the ids the measuring processes need."""
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.tests.factories import staff_make
    from campaigns.models import Campaign, Delivery
    from consent.models import Authorization, AuthorizationForm, Patient, Purpose, Revocation

    call_command("migrate", verbosity=0)
    now = timezone.now()
    author = staff_make(role="marketer")
    approver = staff_make(role="compliance officer")
    officer = staff_make(role="compliance officer")
    purpose = Purpose.objects.create(code="bench-marketing", name="Seasonal health news", kind="marketing")
    form = AuthorizationForm.objects.create(
        purpose=purpose, version=1, status="published", title="Permission to send you seasonal health news",
        published_at=now, text_hash="ab" * 32, expiry_kind="months", expiry_months=24,
    )
    campaign = Campaign.objects.create(
        name="Flu season", purpose=purpose, subject="Flu vaccination: longer hours this autumn",
        body_text="Dear patient, our clinics open longer for flu vaccination.", status="sent", created_by=author,
        approved_by=approver, approved_at=now, launched_at=now, finished_at=now,
    )
    with transaction.atomic():
        insert_select(
            Patient,
            {
                "email": "'placeholder'", "email_digest": "md5('bench-' || n)", "full_name": "'placeholder'",
                "birth_year": "1940 + n %% 60", "sex": "'F'", "postal_code": "'62701'", "state": "'IL'",
                "created_at": "now()",
            },
            "generate_series(1, %s) AS n",
            [rows],
        )
        # 95% covered under the published form; signed a month ago, good for a year.
        insert_select(
            Authorization,
            {
                "patient_id": "p.id", "purpose_id": ("%s", [purpose.pk]), "form_version_id": ("%s", [form.pk]),
                "signed_at": "now() - interval '30 days'", "expires_at": "now() + interval '335 days'",
                "text_hash": "md5(p.id::text) || md5(p.id::text)", "channel": "'web'", "created_at": "now()",
            },
            "consent_patient AS p WHERE p.id %% 20 <> 0",
        )
        insert_select(
            Delivery,
            {
                "campaign_id": ("%s", [campaign.pk]), "patient_id": "p.id",
                "status": "CASE WHEN a.id IS NULL THEN 'blocked' ELSE 'sent' END",
                "authorization_id": "a.id",
                "block_reason": "CASE WHEN a.id IS NULL THEN 'no_authorization' ELSE '' END",
                "message_id": "CASE WHEN a.id IS NULL THEN '' ELSE '<delivery-' || p.id || '@bench.invalid>' END",
                "sent_at": "CASE WHEN a.id IS NULL THEN NULL ELSE now() - interval '2 days' + p.id * interval '1 ms' END",
                "bounced_at": "CASE WHEN a.id IS NOT NULL AND p.id %% 200 = 1 THEN now() - interval '1 day' END",
                "bounce_type": "CASE WHEN a.id IS NOT NULL AND p.id %% 200 = 1 THEN 'hard' ELSE '' END",
                "created_at": "now() - interval '2 days'",
            },
            "consent_patient AS p LEFT JOIN consent_authorization AS a ON a.patient_id = p.id",
        )
        insert_select(
            Revocation,
            {
                "authorization_id": "a.id", "revoked_at": "now() - interval '1 day'", "channel": "'one_click'",
                "scan": "''", "recorded_by_id": "NULL",
            },
            "consent_authorization AS a WHERE a.patient_id %% 100 = 7",
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {
        "campaign_id": campaign.pk,
        "officer_id": officer.pk,
        "deliveries": Delivery.objects.filter(campaign=campaign).count(),
    }


def existing_data() -> dict:
    from django.contrib.auth import get_user_model

    from campaigns.models import Campaign, Delivery

    campaign = Campaign.objects.get(name="Flu season")
    officer = get_user_model().objects.filter(groups__name="compliance officer").order_by("-id").first()
    return {
        "campaign_id": campaign.pk,
        "officer_id": officer.pk,
        "deliveries": Delivery.objects.filter(campaign=campaign).count(),
    }


def _rss_mb() -> float:
    """The process's peak resident set size so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _rss_now_mb() -> float:
    """The resident set size now (Linux: /proc/self/statm, in pages)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_export(campaign_id: int, officer_id: int) -> dict:
    """In a fresh process: the export as the view runs it, the response iterated as a WSGI server would."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from campaigns.reports import campaign_evidence, exports

    officer = get_user_model().objects.get(pk=officer_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    rss_before = _rss_mb()
    started = time.perf_counter()
    meta = exports.report_export_start(
        actor=officer, kind=exports.ReportKind.CAMPAIGN_EVIDENCE, format=exports.CSV, object_type="campaign",
        object_id=campaign_id, filters=[("Campaign", f"#{campaign_id}")],
    )
    response = campaign_evidence.campaign_evidence_csv(meta, campaign_id=campaign_id)
    size = lines = comments = pieces = 0
    first_byte = None
    samples = []
    for piece in response:  # bytes, as handed to the WSGI server
        if first_byte is None:
            first_byte = time.perf_counter() - started
        pieces += 1
        if pieces % 50 == 1:
            samples.append(_rss_now_mb())
        size += len(piece)
        comments += piece.startswith(b"#")
        lines += piece.count(b"\n")
        comments += piece.count(b"\n#")  # provenance lines at the start, totals at the end
    response.close()
    elapsed = time.perf_counter() - started
    rows = lines - comments - 1  # minus the '#' lines and the header
    return {
        "rows": rows,
        "bytes": size,
        "seconds": elapsed,
        "first_byte_seconds": first_byte,
        "rows_per_second": rows / elapsed,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _rss_mb(),
        "rss_during_min_mb": min(samples),
        "rss_during_max_mb": max(samples),
        "rss_first_piece_mb": samples[0],
        "rss_last_sample_mb": samples[-1],
    }


def measure_copy(campaign_id: int) -> dict:
    """Baseline: the same columns and joins through COPY … TO STDOUT, read and thrown away."""
    from django.db import connection

    from campaigns.models import Delivery
    from campaigns.reports.campaign_evidence import _COLUMNS

    query = Delivery.objects.filter(campaign_id=campaign_id).order_by("id").values_list(*_COLUMNS).query
    sql, params = query.sql_with_params()
    connection.ensure_connection()
    raw = connection.connection
    started = time.perf_counter()
    size = lines = 0
    with raw.cursor() as cursor:
        with cursor.copy(
            f"COPY ({cursor.mogrify(sql, params)}) TO STDOUT WITH (FORMAT csv)"
        ) as copy:
            for block in copy:
                size += len(block)
                lines += bytes(block).count(b"\n")
    elapsed = time.perf_counter() - started
    return {"rows": lines, "seconds": elapsed, "rows_per_second": lines / elapsed, "peak_rss_mb": _rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--reuse-data", action="store_true", help="measure the data a previous run left")
    parser.add_argument("--measure", choices=["export", "copy"], help=argparse.SUPPRESS)
    parser.add_argument("--campaign", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--officer", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:  # a child process: one measurement, as JSON on stdout
        _django(os.environ["DATABASE_URL"])
        if args.measure == "export":
            print(json.dumps(measure_export(args.campaign, args.officer)))
        else:
            print(json.dumps(measure_copy(args.campaign)))
        return

    if args.reuse_data:
        database_url = args.admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"
        _django(database_url)
        ids = existing_data()
        print(f"reusing {ids['deliveries']:,} deliveries")
    else:
        database_url = recreate_database(args.admin_url)
        _django(database_url)
        started = time.perf_counter()
        ids = populate(args.rows)
        print(f"set-up: {ids['deliveries']:,} deliveries in {time.perf_counter() - started:.1f} s")

    def child(kind: str) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--measure", kind, "--campaign", str(ids["campaign_id"]),
             "--officer", str(ids["officer_id"])],
            env={**os.environ, "DATABASE_URL": database_url}, capture_output=True, text=True,
        )
        if out.returncode:
            sys.exit(f"the {kind} measurement failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    copy = child("copy")
    print(f"baseline COPY TO STDOUT: {copy['rows']:,} rows in {copy['seconds']:.2f} s "
          f"({copy['rows_per_second']:,.0f} rows/s)")
    results = []
    for run in range(1, args.runs + 1):
        result = child("export")
        results.append(result)
        print(
            f"run {run}: {result['rows']:,} rows, {result['bytes'] / 1e6:.1f} MB in {result['seconds']:.2f} s "
            f"= {result['rows_per_second']:,.0f} rows/s; first byte after {result['first_byte_seconds'] * 1000:.0f} ms; "
            f"RSS before {result['rss_before_mb']:.1f} MB, peak {result['peak_rss_mb']:.1f} MB; "
            f"RSS while streaming {result['rss_during_min_mb']:.1f} to {result['rss_during_max_mb']:.1f} MB "
            f"(first piece {result['rss_first_piece_mb']:.1f}, last sample {result['rss_last_sample_mb']:.1f})"
        )
        assert result["rows"] == ids["deliveries"], (result["rows"], ids["deliveries"])
    rate = statistics.median(result["rows_per_second"] for result in results)
    peak = max(result["peak_rss_mb"] for result in results)
    print(f"median {rate:,.0f} rows/s (target 50,000); worst peak RSS {peak:.1f} MB (target < 150 MB)")
    print("PASS" if rate >= 50_000 and peak < 150 else "FAIL")


if __name__ == "__main__":
    main()
