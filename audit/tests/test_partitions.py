"""docs/retention.md, run as written: partition the audit table by month, then archive its oldest month
(R-RETAIN-6Y: the audit trail is kept and archived whole, never deleted row by row; R-SEC-AUDIT: it stays
append-only and its hash chain checkable throughout).

The SQL, shell and Python blocks come out of docs/retention.md by their `<!-- test_partitions: NAME -->` markers,
so editing the document changes what is tested here. Each test runs in a scratch database of its own, made from
the test database (`CREATE DATABASE … TEMPLATE`) and dropped at the end; Django's connection is pointed at it
for the test, so the product's own sealer (audit.services) and verifier (audit.selectors, manage.py
audit_verify) work on the partitioned table.

Events are inserted unsealed with chosen `occurred_at` values over four past months (the guard lets an
unsealed row in; audit_record always writes "now"), then sealed by audit.services.audit_seal, as the product
seals. One event of the oldest month is inserted after one of the next month, so it is sealed after it: the
month boundary interleaves, as it does when a transaction that started before midnight commits after one that
started after it.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audit import chain
from audit.models import AuditEvent
from audit.selectors import AuditFilters, audit_chain_head, audit_chain_walk, audit_event_page
from audit.services import audit_checkpoint_create, audit_record, audit_seal

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="audit table partitioning is a PostgreSQL procedure (docs/retention.md); the SQLite demo keeps the"
        " table unpartitioned. Set DATABASE_URL to a PostgreSQL database (make test does).",
    ),
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]
RETENTION = ROOT / "docs" / "retention.md"
KEY = "test-only-partition-checkpoint-key-0123456789abcdef"
BLOCK = re.compile(r"^<!-- test_partitions: ([\w.-]+)[^>]*-->\n```(\w+)\n(.*?)\n```$", re.MULTILINE | re.DOTALL)
TOOLS = ("psql", "pg_dump", "pg_restore", "sha256sum", "bash")


def doc_block(name: str) -> str:
    """The fenced block that follows `<!-- test_partitions: NAME -->` in docs/retention.md."""
    found = {match.group(1): match.group(3) for match in BLOCK.finditer(RETENTION.read_text())}
    assert name in found, f"docs/retention.md has no block marked test_partitions: {name} (has {sorted(found)})"
    return found[name]


def month_start(moment: datetime, months: int = 0) -> datetime:
    """The first instant (UTC) of the month `months` after the one holding `moment`."""
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"audit_auditevent_{month:%Y_%m}"


# --- The scratch database ---------------------------------------------------------------------------------


class Scratch:
    def __init__(self, name: str, test_name: str):
        self.name = name
        self.test_name = test_name
        source = connection.settings_dict
        self.env = dict(os.environ)
        for variable, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER"), ("PGPASSWORD", "PASSWORD")):
            if source.get(key):
                self.env[variable] = str(source[key])
        self.env["PGDATABASE"] = name
        # An operator's session need not be in UTC: the documented commands must set what the chain encodes.
        self.env |= {"PGTZ": "America/New_York", "PGDATESTYLE": "SQL, DMY"}
        password = f":{source['PASSWORD']}" if source.get("PASSWORD") else ""
        self.url = (f"postgres://{source['USER'] or ''}{password}@{source['HOST'] or '127.0.0.1'}:"
                    f"{source['PORT'] or 5432}/{name}")

    def psql(self, sql: str) -> subprocess.CompletedProcess:
        """Run SQL as an operator would, in psql (a connection without the test suite's TRUNCATE setting)."""
        return subprocess.run(["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-q"], input=sql, env=self.env,
                              capture_output=True, text=True, timeout=120)

    def bash(self, script: str, cwd: Path, **variables) -> subprocess.CompletedProcess:
        env = self.env | {"DATABASE_URL": self.url, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
        env |= {name: str(value) for name, value in variables.items()}
        return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300)


@pytest.fixture
def scratch(transactional_db, settings):
    """A copy of the (empty, migrated) test database; Django's default connection points at it meanwhile."""
    if not all(shutil.which(tool) for tool in TOOLS):
        pytest.skip(f"{', '.join(TOOLS)} are needed (postgresql-client, coreutils)")
    settings.AUDIT_CHECKPOINT_KEYS = KEY
    test_name = connection.settings_dict["NAME"]
    name = f"{test_name}_partitions"[:63]
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE "{test_name}"')
    database = Scratch(name, test_name)
    connection.close()
    connection.settings_dict["NAME"] = name
    try:
        yield database
    finally:
        connection.close()
        connection.settings_dict["NAME"] = test_name
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}_archive_check" WITH (FORCE)')


def events_over_months(now: datetime) -> dict:
    """Sealed events over the four months before this one, the boundary of the oldest two interleaved."""
    staff = get_user_model().objects.create_user(username="partition-staff", email="staff@example.test")
    months = [month_start(now, -4 + k) for k in range(4)]
    rows = []
    for k, month in enumerate(months):
        for day in (2, 11, 20):
            rows.append((month + timedelta(days=day, hours=k, microseconds=120500 + day), day))
        if k == 0:
            # The first instant of the next month is inserted (and so sealed) before the last instant of this one.
            rows.append((months[1] + timedelta(seconds=1), 31))
            rows.append((months[1] - timedelta(microseconds=10), 30))
    with connection.cursor() as cursor:
        for n, (moment, day) in enumerate(rows):
            cursor.execute(
                "INSERT INTO audit_auditevent (occurred_at, actor_id, actor_role, action, object_type, object_id,"
                " patient_id, details, ip, request_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
                [moment, staff.pk if n % 2 else None, "compliance officer" if n % 2 else "patient",
                 "authorization.granted", "authorization", str(100 + n), 1000 + n,
                 '{"purpose": "cpap-supplies", "ids": [3, 1], "day": %d, "note": "tab\\tand é"}' % day,
                 f"10.0.{n}.7", f"{n:032x}"],
            )
    assert audit_seal() == len(rows)
    oldest = list(AuditEvent.objects.filter(occurred_at__lt=months[1]).order_by("sequence").values_list(
        "sequence", "hash"))
    return {"months": months, "staff": staff, "count": len(rows), "oldest": oldest}


def convert(scratch: Scratch) -> None:
    done = scratch.psql(doc_block("convert"))
    assert done.returncode == 0, done.stderr


def verify_command() -> str:
    out = StringIO()
    call_command("audit_verify", "--read-only", stdout=out)
    return out.getvalue()


def guarded(statement: str) -> str:
    """Run `statement` on a connection as production has it (no TRUNCATE allowance); the refusal's message."""
    with pytest.raises(DatabaseError) as refused, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL hipaamail.allow_truncate = 'off'")
            cursor.execute(statement)
    return str(refused.value)


# --- Converting the table ---------------------------------------------------------------------------------


def test_r_sec_audit_partitioning_as_documented_keeps_the_chain_and_the_guards(scratch):
    """R-SEC-AUDIT, R-RETAIN-6Y: the conversion in docs/retention.md keeps every event and the chain's head,
    new events are sealed and verify, and UPDATE, DELETE and TRUNCATE stay refused on the partitioned table
    and on each partition by itself (a TRUNCATE of one partition does not fire the parent's trigger)."""
    now = datetime.now(UTC)
    data = events_over_months(now)
    checkpoint = audit_checkpoint_create()
    before = audit_chain_walk()
    assert before.ok and before.last_sequence == data["count"] + 1 == checkpoint.sequence + 1
    intact = f"Chain intact through sequence {before.last_sequence} (head {before.last_hash})."
    assert intact in verify_command()

    convert(scratch)

    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'audit_auditevent'")
        assert cursor.fetchone()[0] == "p"
        cursor.execute("SELECT tableoid::regclass::text, count(*) FROM audit_auditevent GROUP BY 1 ORDER BY 1")
        per_partition = dict(cursor.fetchall())
        cursor.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_auditevent'::regclass")
        partitions = cursor.fetchone()[0]
    months = data["months"]
    assert per_partition == {
        partition_name(months[0]): 4, partition_name(months[1]): 4, partition_name(months[2]): 3,
        partition_name(months[3]): 3, partition_name(now): 1,  # the checkpoint's own event
    }
    assert partitions == 4 + 1 + 12  # the four months, this one, twelve ahead
    # The same head, every link and hash, and the signed checkpoint, as the command an operator runs reports.
    assert intact in verify_command()
    assert audit_event_page(AuditFilters()).events[0].action == "audit.checkpointed"  # the audit pages read it

    # New events go into this month's partition and are sealed by the product's sealer; the chain verifies.
    new = [audit_record(actor=None, actor_role="system", action="segment.saved", object_type="thing", object_id=n)
           for n in range(3)]
    # Their ids continue after the moved rows' (the new identity column was set past them).
    assert min(event.pk for event in new) > AuditEvent.objects.exclude(action="segment.saved").order_by("-id")[0].pk
    sealed = list(AuditEvent.objects.filter(pk__in=[event.pk for event in new]).order_by("sequence")
                  .values_list("sequence", flat=True))
    assert sealed == [before.last_sequence + 1, before.last_sequence + 2, before.last_sequence + 3]
    after = audit_chain_walk()
    assert after.ok and after.last_sequence == before.last_sequence + 3 and after.checkpoints_checked == 1
    assert after.last_hash == audit_chain_head().hash

    # The append-only guard, on the parent and on a partition addressed directly.
    total = AuditEvent.objects.count()
    for table in ("audit_auditevent", partition_name(months[1]), partition_name(now)):
        assert "append-only: UPDATE refused" in guarded(f"UPDATE {table} SET action = 'tampered'")
        assert "append-only: DELETE refused" in guarded(f"DELETE FROM {table}")
        assert "append-only: TRUNCATE refused" in guarded(f"TRUNCATE {table}")
        assert "inserted unsealed" in guarded(
            f"INSERT INTO {table} (occurred_at, actor_role, action, object_type, object_id, details, request_id,"
            f" sequence, prev_hash, hash) VALUES ('{months[1]:%Y-%m-%d} 12:00+00', 'system', 'forged', '', '', '{{}}',"
            f" '', 99999, '{chain.GENESIS}', '{chain.GENESIS}')"
        )
    assert AuditEvent.objects.count() == total
    assert not AuditEvent.objects.filter(action__in=["tampered", "forged"]).exists()
    assert audit_chain_walk().ok

    # The actor's foreign key came along: a user an event names cannot be deleted.
    with pytest.raises(DatabaseError, match="foreign key"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM auth_user WHERE id = %s", [data["staff"].pk])

    # The monthly job: idempotent; a partition it makes carries its own TRUNCATE guard.
    ahead = partition_name(month_start(now, 12))
    for _ in range(2):
        done = scratch.psql(doc_block("monthly"))
        assert done.returncode == 0, done.stderr
    later = month_start(now, 13)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)::text", [ahead])
        assert cursor.fetchone()[0] == ahead
        cursor.execute("SELECT audit_partition_create(%s)", [later.date()])
    assert "append-only: TRUNCATE refused" in guarded(f"TRUNCATE {partition_name(later)}")
    # A month with no partition: the insert, and whatever it records, fails.
    with pytest.raises(DatabaseError, match="no partition"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO audit_auditevent (occurred_at, actor_role, action, object_type, object_id, details,"
                " request_id) VALUES (%s, 'system', 'too.late', '', '', '{}', '')",
                [month_start(now, 30)],
            )


# --- Archiving the oldest month ---------------------------------------------------------------------------


def test_r_retain_6y_archiving_a_month_as_documented_keeps_a_checkable_chain(scratch, tmp_path):
    """R-RETAIN-6Y, R-SEC-AUDIT: docs/retention.md's archive of the oldest month — archive head, export checked
    by verify_stretch.py (which catches a changed line), detach (the detached table still refuses row
    changes), dump checked by a restore, drop — leaves a live chain that audit_verify checks from the signed
    archive floor (step 1), and verify_stretch.py from the archive head; restoring the dump and attaching it
    again gives audit_verify the whole chain back."""
    now = datetime.now(UTC)
    data = events_over_months(now)
    convert(scratch)
    audit_checkpoint_create()
    assert audit_chain_walk().ok
    oldest = data["months"][0]
    month = f"{oldest:%Y_%m}"
    (tmp_path / "verify_stretch.py").write_text(doc_block("verify_stretch.py") + "\n")
    genesis = {"MONTH": month, "AFTER": 0, "AFTER_HASH": chain.GENESIS}

    # 1. The archive head: the oldest month's last sequence, after the next month's first event.
    last, last_hash = data["oldest"][-1]
    assert [sequence for sequence, _ in data["oldest"]] == [1, 2, 3, 5]
    head = scratch.bash(doc_block("archive-head"), tmp_path, **genesis)
    assert head.returncode == 0, head.stderr
    assert head.stdout.splitlines() == ["4 0 5", f"archive head: {last} {last_hash}"]
    archive = genesis | {"LAST": last, "LAST_HASH": last_hash}
    # ... and the archive floor signed there, by the product's own command (the key from the environment).
    # (manage.py runs in the product's environment: its key, and libpq's default DateStyle, which psycopg needs.)
    signed = scratch.bash(doc_block("archive-floor"), tmp_path, **archive, AUDIT_CHECKPOINT_KEYS=KEY,
                          PGDATESTYLE="ISO, MDY")
    assert signed.returncode == 0, signed.stderr
    floor_line = json.loads((tmp_path / f"audit-{month}.floor.json").read_text())
    assert (floor_line["kind"], floor_line["sequence"], floor_line["head_hash"]) == ("archive_floor", last, last_hash)

    # 2. The export is the chain from the start through the archive head (the interleaved sequence 4 of the next
    # month included), and verify_stretch.py finds it intact.
    exported = scratch.bash(doc_block("archive-export"), tmp_path, **archive)
    assert exported.returncode == 0, exported.stderr
    assert f"intact: sequences 1 to 5, head {last_hash}" in exported.stdout
    tsv = (tmp_path / f"audit-{month}.tsv").read_bytes()
    assert [int(line.split(b"\t")[0]) for line in tsv.splitlines()] == [1, 2, 3, 4, 5]
    # The check can fail: one changed byte in the archive, or a stretch that stops short, is reported.
    tampered_file = tmp_path / "tampered.tsv"
    tampered_file.write_bytes(tsv.replace(b"cpap-supplies", b"cpap-supplieZ", 1))
    for args, expected in (
        (["tampered.tsv", "1", chain.GENESIS], "broken at sequence 1: the event's stored hash does not match"),
        ([f"audit-{month}.tsv", "1", chain.GENESIS, "6", last_hash], "incomplete: 5 events"),
    ):
        checked = subprocess.run([sys.executable, "verify_stretch.py", *args], cwd=tmp_path, capture_output=True,
                                 text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
        assert checked.returncode == 1 and expected in checked.stderr

    # 4. Detach: the month leaves the chain the verifier walks; the detached table still refuses row changes.
    detached = scratch.bash(doc_block("archive-detach"), tmp_path, **archive)
    assert detached.returncode == 0, detached.stderr
    for statement in (f"DELETE FROM audit_auditevent_{month};", f"UPDATE audit_auditevent_{month} SET action = 'x';"):
        assert "append-only" in scratch.psql(statement).stderr
    assert "append-only: TRUNCATE refused" in guarded(f"TRUNCATE audit_auditevent_{month}")

    # 5. The dump restores, in a scratch database of its own, to the same rows and head; the checksums hold.
    dumped = scratch.bash(doc_block("archive-dump"), tmp_path, **archive)
    assert dumped.returncode == 0, dumped.stderr
    assert f"4 5 {last_hash}" in dumped.stdout.splitlines()
    assert f"audit-{month}.dump: OK" in dumped.stdout and f"audit-{month}.tsv: OK" in dumped.stdout

    # 6. Drop.
    dropped = scratch.bash(doc_block("archive-drop"), tmp_path, **archive)
    assert dropped.returncode == 0, dropped.stderr
    assert not AuditEvent.objects.filter(occurred_at__lt=data["months"][1]).exists()

    # 7. audit_verify starts after the floor: intact, the archived sequences (and the next month's event sealed
    # before the archive head) left out, the hourly checkpoint still matched.
    walk = audit_chain_walk()
    assert walk.ok and walk.archive_floor.sequence == last and walk.checkpoints_checked == 1
    said = verify_command()
    assert f"Events through sequence {last} are archived" in said and "Chain intact" in said
    # New events are still sealed after the head, and the live chain checks from the archive head.
    audit_record(actor=None, actor_role="system", action="segment.saved", object_type="thing", object_id=1)
    head_now = audit_chain_head()
    remainder = scratch.bash(doc_block("verify-after-archive"), tmp_path, **archive)
    assert remainder.returncode == 0, remainder.stderr
    assert f"intact: sequences 6 to {head_now.sequence}, head {head_now.hash}" in remainder.stdout

    # The archive brought back: the whole dump restored into the database and the month attached again, the
    # verifier walks the whole chain from sequence 1, checkpoints included.
    restored = subprocess.run(["pg_restore", "--exit-on-error", "--no-owner", f"--dbname={scratch.name}",
                               str(tmp_path / f"audit-{month}.dump")], env=scratch.env, capture_output=True,
                              text=True, timeout=120)
    assert restored.returncode == 0, restored.stderr
    reattach = (doc_block("reattach").replace("2020_11", month).replace("2020-11-01", f"{oldest:%Y-%m-%d}")
                .replace("2020-12-01", f"{data['months'][1]:%Y-%m-%d}"))
    attached = scratch.psql(reattach)
    assert attached.returncode == 0, attached.stderr
    whole = audit_chain_walk()
    # the whole chain again: the hourly checkpoint and the archive floor both matched where they point
    assert whole.ok and whole.last_sequence == head_now.sequence and whole.checkpoints_checked == 2
    assert whole.archive_floor is None
    assert "append-only: DELETE refused" in guarded(f"DELETE FROM audit_auditevent_{month}")
