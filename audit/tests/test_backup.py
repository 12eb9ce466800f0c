"""A backup made as docs/backups.md says (pg_dump, custom format), restored into a new database, still verifies:
every event, every link and the signed checkpoint come back intact (R-RETAIN-6Y, R-SEC-INTEGRITY)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from audit.services import audit_checkpoint_create, audit_record
from conftest import requires_postgresql

pytestmark = [requires_postgresql, pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-only-backup-checkpoint-key-0123456789abcdef"


def _libpq_env(settings_dict: dict) -> dict:
    env = dict(os.environ)
    for name, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER"), ("PGPASSWORD", "PASSWORD")):
        if settings_dict.get(key):
            env[name] = str(settings_dict[key])
    return env


@pytest.fixture
def restored_name():
    name = f"{connection.settings_dict['NAME']}_restored"[:63]
    yield name
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_r_retain_6y_a_restored_backup_still_verifies(settings, tmp_path, restored_name):
    if not all(shutil.which(tool) for tool in ("pg_dump", "pg_restore", "psql")):
        pytest.skip("pg_dump, pg_restore and psql are needed (postgresql-client)")
    settings.AUDIT_CHECKPOINT_KEYS = KEY
    for n in range(25):
        audit_record(actor=None, actor_role="patient", action="authorization.granted", patient_id=n + 1,
                     object_type="authorization", object_id=n + 1, details={"purpose": "cpap-supplies"})
    checkpoint = audit_checkpoint_create()  # sequence 25; its own event is 26
    source = connection.settings_dict
    env = _libpq_env(source)
    dump = tmp_path / "hipaamail.dump"

    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", source["NAME"]], env=env, check=True,
                   capture_output=True, timeout=300)
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{restored_name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{restored_name}"')
    subprocess.run(["pg_restore", "--exit-on-error", "--no-owner", f"--dbname={restored_name}", str(dump)],
                   env=env, check=True, capture_output=True, timeout=300)

    url = (f"postgres://{source['USER'] or ''}@{source['HOST'] or '127.0.0.1'}:{source['PORT'] or 5432}/"
           f"{restored_name}")
    verify = subprocess.run(
        [sys.executable, "manage.py", "audit_verify"],
        cwd=ROOT,
        env=env | {"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "hipaamail.settings.test",
                   "AUDIT_CHECKPOINT_KEYS": KEY},
        capture_output=True, text=True, timeout=300,
    )

    assert verify.returncode == 0, verify.stderr
    assert "1 checkpoint(s) known, 1 matched" in verify.stdout
    assert "Chain intact through sequence 26" in verify.stdout
    assert checkpoint.sequence == 25
    # The restored database refuses changes to its audit trail like the original (the triggers came back too).
    tampered = subprocess.run(
        ["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-d", restored_name, "-c",
         "DELETE FROM audit_auditevent WHERE sequence = 3"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert tampered.returncode != 0 and "append-only" in tampered.stderr
