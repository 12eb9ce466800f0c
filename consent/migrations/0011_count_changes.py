"""The change log of what the live counts read (ADR 0022): one row per patient whose counting inputs changed,
written by PostgreSQL in the writing transaction, so that campaigns.selectors.count_index, which keeps those inputs in
memory, reads what changed before each answer. Triggers, not the services, write it: every writer is covered the
same way (the services, the COPY import, a migration, an administrator's SQL), and a rolled-back write leaves no
row. Statement-level, with transition tables: a COPY of a million patients costs one INSERT ... SELECT, not a
million trigger calls.

`xid` is the writing transaction (pg_current_xact_id): a reader takes everything at or after the oldest
transaction still running at its last read (pg_snapshot_xmin), so a transaction that commits after one that
started later is still read. patient_id NULL with an email_digest: a suppression changed; both NULL: a TRUNCATE,
read as "load everything again".

PostgreSQL only: on SQLite (the demo) the counts are always the SQL statement's, and nothing reads this table."""

from django.db import migrations

TABLE = """
CREATE TABLE consent_countchange (
    id bigserial PRIMARY KEY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at timestamptz NOT NULL DEFAULT statement_timestamp(),
    patient_id bigint NULL,
    email_digest varchar(64) NULL
);
CREATE INDEX consent_countchange_xid ON consent_countchange (xid);
CREATE INDEX consent_countchange_created_at ON consent_countchange (created_at);

CREATE FUNCTION consent_countchange_log() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    source_column text := TG_ARGV[0];
    target_column text := TG_ARGV[1];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO consent_countchange (patient_id, email_digest) VALUES (NULL, NULL);
    ELSIF TG_OP = 'INSERT' THEN
        EXECUTE format('INSERT INTO consent_countchange (%I) SELECT DISTINCT %I FROM new_rows', target_column, source_column);
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('INSERT INTO consent_countchange (%I) SELECT DISTINCT %I FROM old_rows', target_column, source_column);
    ELSE
        EXECUTE format(
            'INSERT INTO consent_countchange (%I) SELECT %I FROM new_rows UNION SELECT %I FROM old_rows',
            target_column, source_column, source_column
        );
    END IF;
    RETURN NULL;
END
$$;
"""

# (table, the column naming what changed, the change log's column it goes to)
LOGGED = [
    ("consent_patient", "id", "patient_id"),
    ("consent_patientcondition", "patient_id", "patient_id"),
    ("consent_programenrolment", "patient_id", "patient_id"),
    ("consent_authorizationstanding", "patient_id", "patient_id"),
    ("consent_suppression", "email_digest", "email_digest"),
]


def _triggers(table: str, source: str, target: str) -> str:
    function = f"consent_countchange_log('{source}', '{target}')"
    return f"""
CREATE TRIGGER {table}_countchange_insert AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function};
CREATE TRIGGER {table}_countchange_update AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function};
CREATE TRIGGER {table}_countchange_delete AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {function};
CREATE TRIGGER {table}_countchange_truncate AFTER TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {function};
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # params=None: the SQL goes as it is (format()'s %I is not a placeholder).
    schema_editor.execute(TABLE + "".join(_triggers(*logged) for logged in LOGGED), params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, _, _ in LOGGED:
        for event in ("insert", "update", "delete", "truncate"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_countchange_{event} ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS consent_countchange_log() CASCADE")
    schema_editor.execute("DROP TABLE IF EXISTS consent_countchange")


class Migration(migrations.Migration):

    dependencies = [
        ("consent", "0010_authorization_standing"),
    ]

    operations = [migrations.RunPython(forward, backward)]
