"""The zero-service demo's audit table is append-only too: SQLite triggers refuse UPDATE and DELETE
(R-SEC-AUDIT). Migrating a fresh SQLite database also proves every migration runs on SQLite.

The demo database is built by `manage.py migrate` in a subprocess with the demo settings and its own
HIPAAMAIL_VAR_DIR, so the suite's own database (PostgreSQL in CI) is never touched, and the rows are then
written with the sqlite3 module directly: the refusal must come from the database, not from Django.
"""
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory) -> Path:
    var_dir = tmp_path_factory.mktemp("demo-var")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env |= {"HIPAAMAIL_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "hipaamail.settings.local"}
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "1"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert migrate.returncode == 0, f"migrate failed on SQLite:\n{migrate.stdout}\n{migrate.stderr}"
    database = var_dir / "demo.sqlite3"
    assert database.is_file()
    return database


@contextlib.contextmanager
def _sqlite(database: Path):
    db = sqlite3.connect(database)
    try:
        with db:  # commits on success, rolls back on error
            yield db
    finally:
        db.close()


def _insert_event(database: Path) -> int:
    with _sqlite(database) as db:
        cursor = db.execute(
            "INSERT INTO audit_auditevent "
            "(occurred_at, actor_role, action, object_type, object_id, details, ip, request_id, actor_id) "
            "VALUES (CURRENT_TIMESTAMP, 'system', 'fhir.imported', 'thing', '1', ?, NULL, '', NULL)",
            [json.dumps({"ok": True})],
        )
        return cursor.lastrowid


def _event(database: Path, event_id: int):
    with _sqlite(database) as db:
        return db.execute("SELECT action, details FROM audit_auditevent WHERE id = ?", [event_id]).fetchone()


def test_r_sec_audit_sqlite_migrations_install_the_append_only_triggers(demo_database):
    with _sqlite(demo_database) as db:
        triggers = {
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_auditevent'"
            )
        }
    assert {"audit_auditevent_no_update", "audit_auditevent_no_delete"} <= triggers


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET action = 'tampered' WHERE id = ?",
        "UPDATE audit_auditevent SET details = '{}' WHERE id = ?",
        "DELETE FROM audit_auditevent WHERE id = ?",
    ],
    ids=["update-action", "update-details", "delete"],
)
def test_r_sec_audit_sqlite_refuses_update_and_delete(demo_database, statement):
    """R-SEC-AUDIT: on the demo's SQLite database an audit row can be appended, never changed or removed."""
    event_id = _insert_event(demo_database)

    with pytest.raises(sqlite3.DatabaseError, match="append-only"):  # IntegrityError is a DatabaseError
        with _sqlite(demo_database) as db:
            db.execute(statement, [event_id])

    assert _event(demo_database, event_id) == ("fhir.imported", json.dumps({"ok": True}))


def test_r_sec_audit_sqlite_refuses_deleting_every_row(demo_database):
    """A bulk DELETE (what a careless cleanup or Django's flush would issue) is refused as a whole."""
    first, second = _insert_event(demo_database), _insert_event(demo_database)

    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        with _sqlite(demo_database) as db:
            db.execute("DELETE FROM audit_auditevent")

    assert _event(demo_database, first) is not None and _event(demo_database, second) is not None


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_auditcheckpoint SET head_hash = 'f' WHERE id = ?", "DELETE FROM audit_auditcheckpoint WHERE id = ?"],
    ids=["update", "delete"],
)
def test_r_sec_integrity_sqlite_checkpoints_stay_append_only_after_every_migration(demo_database, statement):
    """Migration 0005 rebuilt the checkpoint table on SQLite (a new NOT NULL column); its guard came back."""
    with _sqlite(demo_database) as db:
        checkpoint_id = db.execute(
            "INSERT INTO audit_auditcheckpoint (created_at, sequence, head_hash, key_id, signature) "
            "VALUES (CURRENT_TIMESTAMP, 1, ?, 'k', 's')",
            ["a" * 64],
        ).lastrowid
        assert db.execute("SELECT kind FROM audit_auditcheckpoint WHERE id = ?", [checkpoint_id]).fetchone() == (
            "head",
        )

    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        with _sqlite(demo_database) as db:
            db.execute(statement, [checkpoint_id])


def test_r_sec_integrity_sqlite_allows_only_the_seal_update(demo_database):
    """The sealer's one UPDATE (NULL to a value on the chain columns, nothing else) passes on SQLite too;
    a second seal, or a seal that also changes the content, is refused, as is inserting a sealed row."""
    event_id = _insert_event(demo_database)
    seal = "UPDATE audit_auditevent SET sequence = ?, prev_hash = ?, hash = ? WHERE id = ?"

    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        with _sqlite(demo_database) as db:
            db.execute(
                "UPDATE audit_auditevent SET sequence = 1000, prev_hash = ?, hash = ?, action = 'x' WHERE id = ?",
                ["0" * 64, "f" * 64, event_id],
            )
    with _sqlite(demo_database) as db:
        db.execute(seal, [1000 + event_id, "0" * 64, "a" * 64, event_id])
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        with _sqlite(demo_database) as db:
            db.execute(seal, [2000 + event_id, "0" * 64, "b" * 64, event_id])
    with pytest.raises(sqlite3.DatabaseError, match="inserted unsealed"):
        with _sqlite(demo_database) as db:
            db.execute(
                "INSERT INTO audit_auditevent (occurred_at, actor_role, action, object_type, object_id, details, "
                "request_id, sequence, prev_hash, hash) VALUES (CURRENT_TIMESTAMP, 'x', 'y', '', '', '{}', '', 5000, ?, ?)",
                ["0" * 64, "c" * 64],
            )

    with _sqlite(demo_database) as db:
        assert db.execute("SELECT sequence, hash FROM audit_auditevent WHERE id = ?", [event_id]).fetchone() == (
            1000 + event_id, "a" * 64,
        )


def test_r_sec_integrity_sqlite_demo_seals_checkpoints_and_verifies(tmp_path_factory):
    """The zero-service demo: events written through Django are chained by the sealer, audit_checkpoint signs
    the head, audit_verify walks the chain and passes; after a row is cut (triggers dropped, as only someone
    with the file could), it names the sequence."""
    var_dir = tmp_path_factory.mktemp("demo-chain")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env |= {"HIPAAMAIL_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "hipaamail.settings.local"}

    def manage(*args, code=None):
        command = ["manage.py", *args] if code is None else ["-c", code]
        return subprocess.run(
            [sys.executable, *command], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=180
        )

    assert manage("migrate", "--no-input").returncode == 0
    written = manage(
        code=(
            "import django; django.setup()\n"
            "from audit.services import audit_record\n"
            "for n in range(5): audit_record(actor=None, actor_role='system', action='fhir.imported', patient_id=n,"
            " details={'n': n, 'ids': [2, 1]})\n"
        )
    )
    assert written.returncode == 0, written.stderr
    checkpoint = manage("audit_checkpoint")
    assert checkpoint.returncode == 0, checkpoint.stderr
    assert json.loads(checkpoint.stdout)["sequence"] == 5
    verified = manage("audit_verify")
    assert verified.returncode == 0, verified.stderr
    assert "Chain intact through sequence 6" in verified.stdout

    database = var_dir / "demo.sqlite3"
    with _sqlite(database) as db:
        db.execute("DROP TRIGGER audit_auditevent_no_delete")
        db.execute("DELETE FROM audit_auditevent WHERE sequence = 3")
    broken = manage("audit_verify", "--read-only")
    assert broken.returncode == 1
    assert "Chain broken at sequence 3" in broken.stderr
