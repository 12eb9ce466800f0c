"""Checkpoints get a kind: a chain head (every checkpoint so far) or an archive floor (docs/retention.md).

On SQLite, adding a NOT NULL column rebuilds the table, which drops its triggers: the two append-only triggers
of migration 0004 are created again on the rebuilt table. PostgreSQL adds the column in place (the default is
stored in the catalogue; no row is updated, so the row triggers do not fire)."""
from django.db import migrations, models

SQLITE_CHECKPOINT_GUARD = [
    """CREATE TRIGGER IF NOT EXISTS audit_auditcheckpoint_no_update BEFORE UPDATE ON audit_auditcheckpoint
       BEGIN SELECT RAISE(ABORT, 'audit_auditcheckpoint is append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER IF NOT EXISTS audit_auditcheckpoint_no_delete BEFORE DELETE ON audit_auditcheckpoint
       BEGIN SELECT RAISE(ABORT, 'audit_auditcheckpoint is append-only: DELETE refused'); END;""",
]


def guard_again(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_CHECKPOINT_GUARD:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_chain_guard")]

    # Reversed, the column's removal rebuilds the table again: the first operation's reverse guards it then.
    operations = [
        migrations.RunPython(migrations.RunPython.noop, guard_again),
        migrations.AddField(
            model_name="auditcheckpoint",
            name="kind",
            field=models.CharField(
                choices=[("head", "Chain head"), ("archive_floor", "Archived through")],
                db_default="head",
                default="head",
                max_length=16,
            ),
        ),
        migrations.RunPython(guard_again, migrations.RunPython.noop),
    ]
