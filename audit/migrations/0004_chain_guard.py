"""Guard the chain in the database (docs/adr/0004-audit-hash-chain.md).

Events stay append-only: DELETE is refused, and so is every UPDATE but one, the seal: the three chain columns
(sequence, prev_hash, hash) go from NULL to a value once, while every other column stays exactly as it was.
A sealed event can never change again, and an event cannot be inserted already sealed, so the only way into
the chain is through the sealer. Checkpoints are append-only too. TRUNCATE keeps yielding to the test-only
session setting (ADR 0002).

Before the guard goes on, events written before this migration get their subject (`patient_id`) from their
own content: `object_type = 'patient'` or a `patient_id` in their details. They are not sealed yet, and the
sealer chains them, in id order, the first time it runs.
"""
from django.db import migrations

SEAL_COLUMNS = ("sequence", "prev_hash", "hash")
# Every column of audit_auditevent but the chain's: the SQLite trigger names them (PostgreSQL compares whole
# rows minus the chain columns, so a column added later is guarded without touching the trigger).
CONTENT_COLUMNS = (
    "id", "occurred_at", "actor_id", "actor_role", "action", "object_type", "object_id", "patient_id",
    "details", "ip", "request_id",
)

POSTGRESQL_BACKFILL = """
UPDATE audit_auditevent SET patient_id = CASE
    WHEN object_type = 'patient' AND object_id ~ '^[0-9]{1,18}$' THEN object_id::bigint
    WHEN jsonb_typeof(details -> 'patient_id') = 'number' THEN (details ->> 'patient_id')::bigint
  END
 WHERE patient_id IS NULL AND sequence IS NULL
   AND ((object_type = 'patient' AND object_id ~ '^[0-9]{1,18}$')
        OR jsonb_typeof(details -> 'patient_id') = 'number');
"""
POSTGRESQL_FORWARD = """
CREATE FUNCTION audit_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chain text[] := ARRAY['sequence', 'prev_hash', 'hash'];
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.sequence IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL THEN
            RAISE EXCEPTION 'audit_auditevent: an event is inserted unsealed; only the sealer chains it'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE'
       AND OLD.sequence IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
       AND NEW.sequence IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL
       AND (to_jsonb(NEW) - chain) = (to_jsonb(OLD) - chain) THEN
        RETURN NEW;  -- the seal: NULL to a value, once, nothing else changed
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
DROP TRIGGER audit_auditevent_no_update_delete ON audit_auditevent;
CREATE TRIGGER audit_auditevent_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_guard();
CREATE TRIGGER audit_auditcheckpoint_no_update_delete BEFORE UPDATE OR DELETE ON audit_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER audit_auditcheckpoint_no_truncate BEFORE TRUNCATE ON audit_auditcheckpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
"""
POSTGRESQL_BACKWARD = """
DROP TRIGGER audit_auditcheckpoint_no_truncate ON audit_auditcheckpoint;
DROP TRIGGER audit_auditcheckpoint_no_update_delete ON audit_auditcheckpoint;
DROP TRIGGER audit_auditevent_guard ON audit_auditevent;
DROP FUNCTION audit_event_guard();
CREATE TRIGGER audit_auditevent_no_update_delete BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
"""

_unchanged = " AND ".join(f"NEW.{column} IS OLD.{column}" for column in CONTENT_COLUMNS)
_seal = " AND ".join(f"OLD.{column} IS NULL AND NEW.{column} IS NOT NULL" for column in SEAL_COLUMNS)
SQLITE_BACKFILL = """
UPDATE audit_auditevent SET patient_id = CASE
    WHEN object_type = 'patient' AND object_id != '' AND object_id NOT GLOB '*[^0-9]*' THEN CAST(object_id AS INTEGER)
    ELSE json_extract(details, '$.patient_id')
  END
 WHERE patient_id IS NULL AND sequence IS NULL
   AND ((object_type = 'patient' AND object_id != '' AND object_id NOT GLOB '*[^0-9]*')
        OR json_type(details, '$.patient_id') = 'integer');
"""
# Migration 0003 rebuilt the table on SQLite (new columns), which drops its triggers: (re)create them all.
SQLITE_FORWARD = [
    "DROP TRIGGER IF EXISTS audit_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS audit_auditevent_no_delete;",
    f"""CREATE TRIGGER audit_auditevent_no_update BEFORE UPDATE ON audit_auditevent
       WHEN NOT ({_seal} AND {_unchanged})
       BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER audit_auditevent_no_delete BEFORE DELETE ON audit_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only: DELETE refused'); END;""",
    """CREATE TRIGGER audit_auditevent_insert_unsealed BEFORE INSERT ON audit_auditevent
       WHEN NEW.sequence IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL
       BEGIN SELECT RAISE(ABORT, 'audit_auditevent: an event is inserted unsealed; only the sealer chains it'); END;""",
    """CREATE TRIGGER audit_auditcheckpoint_no_update BEFORE UPDATE ON audit_auditcheckpoint
       BEGIN SELECT RAISE(ABORT, 'audit_auditcheckpoint is append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER audit_auditcheckpoint_no_delete BEFORE DELETE ON audit_auditcheckpoint
       BEGIN SELECT RAISE(ABORT, 'audit_auditcheckpoint is append-only: DELETE refused'); END;""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_auditcheckpoint_no_delete;",
    "DROP TRIGGER IF EXISTS audit_auditcheckpoint_no_update;",
    "DROP TRIGGER IF EXISTS audit_auditevent_insert_unsealed;",
    "DROP TRIGGER IF EXISTS audit_auditevent_no_update;",
    """CREATE TRIGGER audit_auditevent_no_update BEFORE UPDATE ON audit_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only: UPDATE refused'); END;""",
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        # The old row trigger refuses every UPDATE; this one-off backfill runs before it is replaced.
        schema_editor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_no_update_delete")
        schema_editor.execute(POSTGRESQL_BACKFILL, params=None)
        schema_editor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_no_update_delete")
        schema_editor.execute(POSTGRESQL_FORWARD, params=None)
    elif vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS audit_auditevent_no_update;")
        schema_editor.execute(SQLITE_BACKFILL, params=None)
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement, params=None)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_BACKWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_chain_and_subject")]

    operations = [migrations.RunPython(forward, backward)]
