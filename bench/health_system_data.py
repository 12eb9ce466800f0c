"""The health-system data set of bench/health_system.py (issue 15, item 5): 1,000,000 patients, 3,000,000
authorizations across 10 purposes (5 % revoked, 2 % expired), 50,000 suppressions, built fast and kept.

Rows are what the product's services write, only written in bulk:

- patients: every direct identifier encrypted with consent.crypto.encrypt (AES-GCM under the first key of
  FIELD_ENCRYPTION_KEYS, a fresh nonce each) and looked up by consent.crypto.lookup_digest, as the patient import's
  COPY writer does (consent.patient_import.write._write_copy), in two forked processes (the encryption is the
  cost); coded attributes (birth year, sex, postal code, state, last visit) in the clear, as the import keeps them;
- condition codes and program enrolments: INSERT … SELECT generate_series, chosen by a hash of the patient's id;
- purposes and their forms through the real services (drafted, filled, published: consent.services.form_versions);
- authorizations: INSERT … SELECT, three per patient for three different purposes, each naming its purpose's
  published form version, carrying that form's exact text (consent.documents.form_text) and its SHA-256 (the
  hash signing checks), the patient's typed name (encrypted: the patient's own encrypted name, which decrypts to
  it), expiry 24 months after signing as the form says; 2 % signed 25 months ago and so expired, 5 % revoked
  (a revocation row each, portal or one-click);
- suppressions: 50,000 of the patients' own address digests (hard bounces and complaints);
- the authorizations' standing and the patients' counts of authorized purposes (the live counts' summary, ADR 0021),
  written from that evidence by consent.services.standing.authorization_standing_rebuild.

What is left out: the audit events the services would have written for each of these 4 million changes (none of
the benchmarks reads them; the audit chain's own benchmark is bench/audit_scale.py), PDF copies (files on disk).

Kept between runs: a table `bench_health_system` in the data set's database records the parameters and how long
the build took; a run whose parameters match reuses the database, migrating it first when the schema has moved on (as an
installation upgrades); `--rebuild` forces a new one.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from datetime import date, timedelta

# Ten purposes a health system emails about: eight marketing, two treatment or operations (no third party pays).
PURPOSES = [
    ("cpap-supplies", "CPAP masks and supplies", "marketing"),
    ("diabetes-program", "Diabetes prevention program", "marketing"),
    ("flu-clinics", "Flu and COVID vaccination clinics", "marketing"),
    ("heart-health", "Heart health classes", "marketing"),
    ("hearing-aids", "Hearing aids from our audiology clinic", "marketing"),
    ("orthopaedic-braces", "Orthopaedic braces and supports", "marketing"),
    ("wellness-membership", "Wellness membership", "marketing"),
    ("sleep-study", "Sleep studies", "marketing"),
    ("refill-reminders", "Refill reminders", "treatment"),
    ("appointment-reminders", "Appointment reminders", "treatment"),
]
CONDITIONS = ["E11", "E11.9", "G47.33", "I10", "J44.9", "M17.11", "E78.5", "N18.3", "F32.9", "K21.9"]
PROGRAMS = ["DPP", "CPAP-RESUPPLY", "CARDIAC-REHAB"]
STATES = ["IL", "WI", "IN", "MI", "OH", "IA", "MO", "MN", "KY", "NY"]
STATE_WEIGHTS = [30, 15, 12, 10, 8, 7, 6, 5, 4, 3]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken", "Maria", "Luis"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Perlman", "Thompson"]
AUTHORIZATIONS_PER_PATIENT = 3  # purposes b, b+3, b+7 (mod 10) for b = id mod 10: 30 % of patients per purpose
PURPOSE_OFFSETS = (0, 3, 7)
EXPIRED_PERCENT = 2
REVOKED_PERCENT = 5
SUPPRESSED_PER_PATIENTS = 20  # one patient in 20: 50,000 of 1,000,000
CHUNK = 25_000  # patients per COPY (one transaction each)
MARKER = "bench_health_system"


def parameters(patients: int) -> dict:
    """What the data set is made of; a kept data set is reused only when these are equal."""
    return {
        "patients": patients,
        "authorizations_per_patient": AUTHORIZATIONS_PER_PATIENT,
        "purposes": [code for code, _, _ in PURPOSES],
        "expired_percent": EXPIRED_PERCENT,
        "revoked_percent": REVOKED_PERCENT,
        "suppressed_per_patients": SUPPRESSED_PER_PATIENTS,
        "version": 1,
    }


def kept(connection_url: str, patients: int) -> dict | None:
    """The marker of a finished build with these parameters in that database, or None."""
    import psycopg

    try:
        with psycopg.connect(connection_url) as conn:
            row = conn.execute(f"SELECT params, built_seconds, built_at FROM {MARKER}").fetchone()
    except psycopg.Error:
        return None
    if row is None or row[0] != parameters(patients):
        return None
    return {"seconds": row[1], "built_at": row[2]}


def _patient_rows(first_id: int, count: int, today: date):
    """Deterministic synthetic patients (no real person) with their identifiers encrypted and digested."""
    from consent import crypto

    encrypt, digest = crypto.encrypt, crypto.lookup_digest
    rng = random.Random(first_id)
    for pk in range(first_id, first_id + count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first.lower()}.{last.lower()}.{pk}@example.org"
        external_id = f"MRN{pk:08d}"
        birth = date(rng.randrange(1930, 2008), rng.randrange(1, 13), rng.randrange(1, 29))
        visit = None if rng.random() < 0.1 else today - timedelta(days=rng.randrange(1, 3 * 365))
        refill = today + timedelta(days=rng.randrange(1, 90)) if rng.random() < 0.2 else None
        yield (
            pk,
            encrypt(external_id),
            digest(external_id),
            encrypt(email),
            digest(email),
            encrypt(f"{first} {last}"),
            encrypt(f"555-{rng.randrange(10000):04d}"),
            encrypt(f"{rng.randrange(1, 9999)} Synthetic St"),
            encrypt(birth.isoformat()),
            birth.year,
            rng.choices("FMX", weights=(50, 48, 2))[0],
            f"{rng.randrange(46000, 63000):05d}",
            rng.choices(STATES, weights=STATE_WEIGHTS)[0],
            visit,
            refill,
            "",
        )


def _copy_patients(first_id: int, count: int) -> int:
    """One chunk: encrypt in this process, COPY on a connection of its own, commit."""
    from django.db import connection, transaction
    from django.utils import timezone

    from consent.patient_import.write import COPY_PATIENT_COLUMNS

    now = timezone.now()
    today = timezone.localdate()
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY consent_patient ({', '.join(COPY_PATIENT_COLUMNS)}) FROM STDIN") as copy:
            for row in _patient_rows(first_id, count, today):
                copy.write_row((*row, 0, now))  # authorized_purposes: none until the authorizations (rebuild)
    return count


def _copy_worker(chunks: list[tuple[int, int]], results) -> None:
    from django.db import connection

    connection.close()  # a connection of this process's own
    written = 0
    for first_id, count in chunks:
        written += _copy_patients(first_id, count)
    connection.close()
    results.put(written)


def build(*, patients: int, processes: int = 2, say=print) -> float:
    """Fill the (migrated, empty) database Django is connected to. Returns the seconds it took."""
    from django.db import connection

    from consent.documents import form_text, text_hash
    from consent.models import Purpose
    from consent.tests.factories import form_published_make

    started = time.perf_counter()

    def step(label: str, since: float) -> float:
        now = time.perf_counter()
        say(f"  {label}: {now - since:.1f} s")
        return now

    # Purposes and their forms through the services: each form drafted, filled in and published.
    forms = []
    for code, name, kind in PURPOSES:
        purpose = Purpose.objects.create(code=code, name=name, kind=kind, description=f"Messages about {name.lower()}.")
        form = form_published_make(purpose, purpose_description=f"To tell you about {name.lower()}.")
        text = form_text(form)
        assert text_hash(text) == form.text_hash  # the hash signing checks against
        forms.append((purpose.pk, form.pk, text, form.text_hash))
    mark = step("10 purposes with published forms (services)", started)

    # Patients: the encryption is the cost, so two processes, each COPYing its own chunks.
    chunks = [(first, min(CHUNK, patients - first + 1)) for first in range(1, patients + 1, CHUNK)]
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    connection.close()
    workers = [context.Process(target=_copy_worker, args=(chunks[i::processes], results)) for i in range(processes)]
    for worker in workers:
        worker.start()
    written = sum(results.get() for _ in workers)
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise SystemExit(f"a patient writer failed (exit {worker.exitcode})")
    assert written == patients, written
    mark = step(f"{patients:,} patients, identifiers encrypted and digested ({processes} processes, COPY)", mark)

    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('consent_patient', 'id'), %s)", [patients])
        # Each condition for about 15 % of patients, each program for about 4 %, chosen by a hash of the id.
        cursor.execute(
            """
            INSERT INTO consent_patientcondition (patient_id, code)
            SELECT p, c FROM generate_series(1, %s) AS p, unnest(%s::text[]) AS c
             WHERE abs(hashtextextended(p::text || c, 7)) %% 100 < 15
            """,
            [patients, CONDITIONS],
        )
        cursor.execute(
            """
            INSERT INTO consent_programenrolment (patient_id, code)
            SELECT p, c FROM generate_series(1, %s) AS p, unnest(%s::text[]) AS c
             WHERE abs(hashtextextended(p::text || c, 8)) %% 100 < 4
            """,
            [patients, PROGRAMS],
        )
        mark = step("condition codes and program enrolments (INSERT … SELECT)", mark)

        # Three authorizations per patient, for purposes b, b+3 and b+7 (mod 10), b = id mod 10. Authorization
        # id = 3 * (patient - 1) + k + 1. h: a hash of the id deciding expired (2 %), revoked (5 %), or neither.
        cursor.execute(
            """
            CREATE TEMPORARY TABLE bench_forms (slot int PRIMARY KEY, purpose_id bigint, form_id bigint,
                                                document_text text, text_hash text)
            """
        )
        with cursor.cursor.copy("COPY bench_forms FROM STDIN") as copy:
            for slot, row in enumerate(forms):
                copy.write_row((slot, *row))
        cursor.execute(
            """
            INSERT INTO consent_authorization (
                id, patient_id, purpose_id, form_version_id, signed_at, expires_at, expiry_event, document_text,
                text_hash, signature_name, signed_by_representative, representative_authority, signed_ip,
                user_agent, pdf, scan, channel, recorded_by_id, created_at)
            SELECT x.id, p.id, f.purpose_id, f.form_id, x.signed_at, x.signed_at + interval '24 months', '',
                   f.document_text, f.text_hash, p.full_name, false, '', '', 'bench/health_system', '', '',
                   'import', NULL, x.signed_at
              FROM consent_patient AS p
             CROSS JOIN unnest(%s::int[]) WITH ORDINALITY AS k(purpose_offset, n)
             CROSS JOIN LATERAL (
                   SELECT 3 * (p.id - 1) + k.n AS id,
                          CASE WHEN abs(hashtextextended((3 * (p.id - 1) + k.n)::text, 1)) %% 100 < %s
                               THEN now() - interval '25 months'
                                    - (abs(hashtextextended((3 * (p.id - 1) + k.n)::text, 2)) %% 600) * interval '1 hour'
                               ELSE now() - interval '10 days'
                                    - (abs(hashtextextended((3 * (p.id - 1) + k.n)::text, 2)) %% 600) * interval '1 day'
                          END AS signed_at) AS x
              JOIN bench_forms AS f ON f.slot = (p.id + k.purpose_offset) %% 10
            """,
            [list(PURPOSE_OFFSETS), EXPIRED_PERCENT],
        )
        authorizations = cursor.rowcount
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('consent_authorization', 'id'), %s)", [authorizations]
        )
        mark = step(f"{authorizations:,} authorizations (INSERT … SELECT)", mark)
        cursor.execute(
            """
            INSERT INTO consent_revocation (authorization_id, revoked_at, channel, scan, recorded_by_id)
            SELECT a.id, a.signed_at + (1 + abs(hashtextextended(a.id::text, 3)) %% 9) * interval '1 day',
                   CASE WHEN a.id %% 2 = 0 THEN 'portal' ELSE 'one_click' END, '', NULL
              FROM consent_authorization AS a
             WHERE abs(hashtextextended(a.id::text, 1)) %% 100 >= %s
               AND abs(hashtextextended(a.id::text, 1)) %% 100 < %s
             ORDER BY a.id
            """,
            [EXPIRED_PERCENT, EXPIRED_PERCENT + REVOKED_PERCENT],
        )
        revoked = cursor.rowcount
        mark = step(f"{revoked:,} revocations (INSERT … SELECT)", mark)
        cursor.execute(
            """
            INSERT INTO consent_suppression (email_digest, reason, smtp_code, created_at, recorded_by_id)
            SELECT email_digest,
                   CASE WHEN id %% 10 < 7 THEN 'hard_bounce' ELSE 'complaint' END,
                   CASE WHEN id %% 10 < 7 THEN '550' ELSE '' END,
                   now() - interval '30 days', NULL
              FROM consent_patient
             WHERE abs(hashtextextended(id::text, 4)) %% %s = 0
             ORDER BY id
            """,
            [SUPPRESSED_PER_PATIENTS],
        )
        suppressed = cursor.rowcount
        mark = step(f"{suppressed:,} suppressions (INSERT … SELECT)", mark)
    # The live counts' summary of these authorizations, which the services write beside each grant and revocation
    # (ADR 0021): written here from the evidence, as an operator's `authorization_standing --rebuild` does.
    from consent.services.standing import authorization_standing_rebuild

    written = authorization_standing_rebuild()
    mark = step(
        f"{written['standings']:,} standings and {written['patients']:,} patients' purpose counts "
        "(consent.services.standing.authorization_standing_rebuild)",
        mark,
    )
    # The change log of the count index (ADR 0022) now names every patient several times over: a process's index
    # loads everything on its first request anyway, so the bulk load's entries are dropped, as a day's pruning would.
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE consent_countchange")
    # VACUUM (the visibility map, for index-only scans) and ANALYZE, as autovacuum would have done by now.
    connection.close()
    import psycopg

    with psycopg.connect(_url(), autocommit=True) as admin:
        admin.execute("VACUUM ANALYZE")
    mark = step("VACUUM ANALYZE", mark)
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {MARKER} (params jsonb, built_seconds float, built_at timestamptz)")
        cursor.execute(
            f"INSERT INTO {MARKER} VALUES (%s, %s, now())", [json.dumps(parameters(patients)), seconds]
        )
    return seconds


def _url() -> str:
    import os

    return os.environ["DATABASE_URL"]
