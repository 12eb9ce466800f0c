#!/usr/bin/env python
"""Benchmark (issue 13, item 5): 100,000 patients upserted through the integration API over real HTTP, against
the CSV import's writer on the same rows. Target: 2,000 patients/s or more on a 2-core machine.

    .venv/bin/python bench/api_patients_upsert.py [--patients 100000] [--batch 1000] [--runs 3]
    BENCH_ADMIN_URL=postgres://postgres@db:5432/postgres .venv/bin/python bench/api_patients_upsert.py

It (re)creates the database `hipaamail_bench_api` (drops it first; `--database` for another name), migrates it with
`hipaamail.settings.test` (test encryption keys), creates an administrator and an API key with the patients:write
scope, and starts `manage.py runserver --noreload --nothreading` on a free loopback port against that database
(DEBUG off). Each run then, from an empty patient table:

- **API**: the first half of the synthetic patients is created (`POST /api/v1/patients/upsert`, batches of
  `--batch`, each with a fresh Idempotency-Key), then a second pass updates the same patients (every item
  changes its phone, state, last visit and condition codes), one batch after another from one client: `--patients`
  upserts in all (100 batches of 1,000 by default). Every answer is checked (status 200, every item created, then
  every item updated). Timed from the first request to the last answer: HTTP, JSON, the key and scope check, the
  Idempotency-Key record and its encrypted copy of the answer, validation, the locking digest lookup, encryption,
  COPY, the per-call and per-batch audit events, and the commit.
- **baseline** (same run, same rows): the CSV import's writer (`patient_rows_write`: COPY, encryption included)
  on the same creates and then the same updates (validated in update mode first, not timed), in one transaction
  rolled back at the end. The ratio is API rate / writer rate.

It prints each run and the median and spread (min–max) over the runs; record them in docs/benchmarks.md.
"""
import argparse
import csv
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "hipaamail_bench_api"
CONDITIONS = ["E11", "E11.9", "G47.33", "I10", "J44.9", "M17.11", "E78.5", "N18.3", "F32.9", "K21.9"]
STATES = ["MA", "NY", "CA", "TX", "FL", "WA", "IL", "OH"]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Perlman", "Thompson"]
COLUMNS = (
    "external_id", "email", "full_name", "phone", "street_address", "birth_date", "sex", "postal_code", "state",
    "last_visit", "condition_codes",
)


def synthetic_items(count: int, *, run: int, second_pass: bool, seed: int = 13) -> list[dict]:
    """Deterministic synthetic patients (no real person). Record numbers and emails carry the run number, so
    that each run creates patients of its own; the second pass changes phone, state, last visit and codes."""
    rng = random.Random(seed + run)
    update = random.Random(seed + run + 1000)
    items = []
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        item = {
            "external_id": f"R{run}-MRN{n:07d}",
            "email": f"{first.lower()}.{last.lower()}.{run}.{n}@example.org",
            "full_name": f"{first} {last}",
            "phone": f"555-{rng.randrange(10000):04d}",
            "street_address": f"{rng.randrange(1, 9999)} Synthetic St",
            "birth_date": f"{rng.randrange(1930, 2005)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            "sex": rng.choice("FMX"),
            "postal_code": f"{rng.randrange(1000, 99999):05d}",
            "state": rng.choice(STATES),
            "last_visit": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            "condition_codes": rng.sample(CONDITIONS, rng.randrange(0, 4)),
        }
        if second_pass:
            item |= {
                "phone": f"555-{update.randrange(10000):04d}-1",
                "state": update.choice([state for state in STATES if state != item["state"]]),
                "last_visit": f"2025-{update.randrange(1, 13):02d}-{update.randrange(1, 29):02d}",
                "condition_codes": update.sample(CONDITIONS, update.randrange(1, 4)),
            }
        items.append(item)
    return items


def items_csv(items: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for item in items:
        writer.writerow([";".join(item[c]) if c == "condition_codes" else item[c] for c in COLUMNS])
    return out.getvalue()


def recreate_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer {url} within {seconds:.0f} s")


def post(base: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{base}/api/v1/patients/upsert",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        if response.status != 200:
            raise SystemExit(f"upsert answered {response.status}")
        return json.loads(response.read())


def api_pass(base: str, token: str, items: list[dict], batch: int, expect: str) -> float:
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        answer = post(base, token, {"items": items[start : start + batch]})
        size = len(items[start : start + batch])
        if answer[expect] != size:
            bad = [item for item in answer["items"] if item["status"] != expect][:3]
            raise SystemExit(f"expected {size} {expect}, got {answer} (first others: {bad})")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000, help="upserts per run: half creates, half updates")
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    half = args.patients // 2

    env = {
        **os.environ,
        "DATABASE_URL": recreate_database(args.admin_url, args.database),
        "DJANGO_SETTINGS_MODULE": "hipaamail.settings.test",
        "DEBUG": "false",
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.INFO)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction

    from api.keys import api_key_create
    from api.scopes import PATIENTS_WRITE
    from consent.models import Patient
    from consent.patient_import.validate import patient_csv_validate
    from consent.patient_import.write import patient_rows_write

    call_command("migrate", verbosity=0)
    admin = get_user_model().objects.create_user(username="bench-admin", email="bench-admin@example.org", password="x" * 20)
    token = api_key_create(
        actor=admin, name="bench", scopes=[PATIENTS_WRITE], rate_limit_per_minute=100_000
    ).token
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", "--nothreading", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"{base}/api/v1/openapi.json")
        print(
            f"{args.patients:,} upserts per run ({half:,} creates, then {half:,} updates), batches of {args.batch:,}, "
            f"server pid {server.pid} on port {port}; {os.cpu_count()} CPUs"
        )
        results = []
        for run in range(1, args.runs + 1):
            creates = synthetic_items(half, run=run, second_pass=False)
            updates = synthetic_items(half, run=run, second_pass=True)

            # Baseline: the CSV writer on the same rows, rolled back.
            with transaction.atomic():
                validation = patient_csv_validate(text=items_csv(creates))
                assert not validation.errors, validation.errors[:3]
                started = time.perf_counter()
                patient_rows_write(rows=validation.rows)
                writer_create = time.perf_counter() - started
                validation = patient_csv_validate(text=items_csv(updates), mode="update")
                assert not validation.errors and validation.update_rows == half, validation.errors[:3]
                started = time.perf_counter()
                patient_rows_write(rows=validation.rows, columns=validation.columns)
                writer_update = time.perf_counter() - started
                transaction.set_rollback(True)
            connection.close()

            api_create = api_pass(base, token, creates, args.batch, "created")
            api_update = api_pass(base, token, updates, args.batch, "updated")
            api_rate = args.patients / (api_create + api_update)
            writer_rate = args.patients / (writer_create + writer_update)
            results.append(
                {
                    "api": api_rate, "writer": writer_rate, "ratio": api_rate / writer_rate,
                    "api_create": half / api_create, "api_update": half / api_update,
                    "writer_create": half / writer_create, "writer_update": half / writer_update,
                }
            )
            load = os.getloadavg()[0]
            print(
                f"run {run}: API {api_rate:7,.0f} patients/s (create {half / api_create:,.0f}, update "
                f"{half / api_update:,.0f}; {api_create + api_update:.1f} s)   writer {writer_rate:7,.0f}/s (create "
                f"{half / writer_create:,.0f}, update {half / writer_update:,.0f})   ratio {api_rate / writer_rate:.2f}"
                f"   load {load:.1f}"
            )
        assert Patient.objects.count() == half * args.runs
        print()
        for name, label in (
            ("api", "API patients/s"), ("api_create", "  creates/s"), ("api_update", "  updates/s"),
            ("writer", "writer rows/s"), ("ratio", "ratio API / writer"),
        ):
            values = [result[name] for result in results]
            fmt = "{:.2f}" if name == "ratio" else "{:,.0f}"
            print(
                f"{label:20} median {fmt.format(statistics.median(values))} "
                f"(min {fmt.format(min(values))}, max {fmt.format(max(values))})"
            )
        median = statistics.median(result["api"] for result in results)
        print(f"target 2,000 patients/s: {'met' if median >= 2000 else 'NOT met'} (median {median:,.0f})")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
