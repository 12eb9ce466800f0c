#!/usr/bin/env python
"""Benchmark: import 100,000 synthetic patients (encryption included) through the real import service on
PostgreSQL. Target (issue 4): 5,000 rows/s or more.

    .venv/bin/python bench/import_patients.py [--rows 100000] [--admin-url postgres://postgres@127.0.0.1:5432/postgres]

It (re)creates the database `hipaamail_bench` (drops it first), migrates it, writes a deterministic CSV, then times
separately: parse + validate (patient_csv_validate, including the digest queries against existing patients) and
write (patient_rows_write in one transaction: COPY of Patient rows with their encryption, and of PatientCondition
rows). Baselines in the same run, each in a transaction rolled back before the real import: encryption alone,
psycopg COPY of the same rows already encrypted (the fastest way PostgreSQL takes them), and the bulk_create
fallback used on SQLite. Results go to stdout; record them in
docs/benchmarks.md.
"""
import argparse
import csv
import io
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "hipaamail_bench"
CONDITIONS = ["E11", "E11.9", "G47.33", "I10", "J44.9", "M17.11", "E78.5", "N18.3", "F32.9", "K21.9"]
STATES = ["MA", "NY", "CA", "TX", "FL", "WA", "IL", "OH"]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Perlman", "Thompson"]


def synthetic_csv(rows: int, seed: int = 4) -> str:
    """Deterministic synthetic patients: no real person, same file on every run."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["external_id", "email", "full_name", "phone", "street_address", "birth_date", "sex", "postal_code",
         "state", "last_visit", "condition_codes"]
    )
    for n in range(rows):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        writer.writerow(
            [
                f"MRN{n:07d}",
                f"{first.lower()}.{last.lower()}.{n}@example.org",
                f"{first} {last}",
                f"555-{rng.randrange(10000):04d}",
                f"{rng.randrange(1, 9999)} Synthetic St",
                f"{rng.randrange(1930, 2005)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                rng.choice("FMX"),
                f"{rng.randrange(1000, 99999):05d}",
                rng.choice(STATES),
                f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                ";".join(rng.sample(CONDITIONS, rng.randrange(0, 4))),
            ]
        )
    return out.getvalue()


def recreate_database(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    return admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = recreate_database(args.admin_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hipaamail.settings.test"
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.INFO)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from consent import crypto
    from consent.models import Patient, PatientCondition
    from consent.patient_import.validate import patient_csv_validate
    from consent.patient_import.write import patient_rows_write

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    text = synthetic_csv(args.rows)
    print(f"generated {args.rows:,} rows ({len(text) / 1e6:.1f} MB) in {time.perf_counter() - started:.2f}s")

    # Baseline: the same rows, already encrypted, through COPY; rolled back so that the real import starts clean.
    validation = patient_csv_validate(text=text)
    assert not validation.errors, validation.errors[:5]
    started = time.perf_counter()
    prepared = []
    for row in validation.rows:
        prepared.append(
            (
                crypto.encrypt(row.external_id), crypto.lookup_digest(row.external_id), crypto.encrypt(row.email),
                crypto.lookup_digest(row.email), crypto.encrypt(row.full_name), crypto.encrypt(row.phone),
                crypto.encrypt(row.street_address), crypto.encrypt(row.birth_date.isoformat()), row.birth_date.year,
                row.sex, row.postal_code, row.state, row.last_visit,
            )
        )
    encrypt_seconds = time.perf_counter() - started
    columns = (
        "external_id, external_id_digest, email, email_digest, full_name, phone, street_address, birth_date, "
        "birth_year, sex, postal_code, state, last_visit, created_at"
    )
    with transaction.atomic():
        started = time.perf_counter()
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY consent_patient ({columns}) FROM STDIN") as copy:
                for values in prepared:
                    copy.write_row((*values, "2026-01-01T00:00:00Z"))
        copy_seconds = time.perf_counter() - started
        transaction.set_rollback(True)
    del prepared

    # The fallback path (SQLite, or any database without COPY): bulk_create, also rolled back.
    with transaction.atomic():
        started = time.perf_counter()
        patient_rows_write(rows=validation.rows, method="bulk_create")
        bulk_seconds = time.perf_counter() - started
        transaction.set_rollback(True)

    # The real service: parse + validate, then write in one transaction.
    started = time.perf_counter()
    validation = patient_csv_validate(text=text)
    validate_seconds = time.perf_counter() - started
    assert not validation.errors and validation.valid_rows == args.rows
    started = time.perf_counter()
    with transaction.atomic(durable=True):
        written = patient_rows_write(rows=validation.rows)
    write_seconds = time.perf_counter() - started
    assert written == args.rows == Patient.objects.count()
    conditions = PatientCondition.objects.count()

    total = validate_seconds + write_seconds
    print(f"patients: {written:,}   conditions: {conditions:,}")
    print(f"parse+validate: {validate_seconds:6.2f}s  {args.rows / validate_seconds:9,.0f} rows/s")
    print(f"write:          {write_seconds:6.2f}s  {args.rows / write_seconds:9,.0f} rows/s  (COPY, encrypted)")
    print(f"import total:   {total:6.2f}s  {args.rows / total:9,.0f} rows/s  (target 5,000)")
    print(f"baseline: encrypt only {encrypt_seconds:.2f}s ({args.rows / encrypt_seconds:,.0f} rows/s); "
          f"COPY of pre-encrypted patients {copy_seconds:.2f}s ({args.rows / copy_seconds:,.0f} rows/s)")
    print(f"fallback write via bulk_create: {bulk_seconds:.2f}s ({args.rows / bulk_seconds:,.0f} rows/s)")
    print(f"ratio write / (encrypt + COPY): {write_seconds / (encrypt_seconds + copy_seconds):.2f}")


if __name__ == "__main__":
    main()
