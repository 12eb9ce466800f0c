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
            "VALUES (CURRENT_TIMESTAMP, 'system', 'test.event', 'thing', '1', ?, NULL, '', NULL)",
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

    assert _event(demo_database, event_id) == ("test.event", json.dumps({"ok": True}))


def test_r_sec_audit_sqlite_refuses_deleting_every_row(demo_database):
    """A bulk DELETE (what a careless cleanup or Django's flush would issue) is refused as a whole."""
    first, second = _insert_event(demo_database), _insert_event(demo_database)

    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        with _sqlite(demo_database) as db:
            db.execute("DELETE FROM audit_auditevent")

    assert _event(demo_database, first) is not None and _event(demo_database, second) is not None
