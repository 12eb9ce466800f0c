"""Consent evidence is append-only in the database (R-AUTH-IMMUTABLE, R-RETAIN-6Y, DESIGN.md).

- A published authorization form version is never updated or deleted; a draft may be edited or published.
- Authorizations are never deleted, and never updated but to attach their PDF copy once.
- Revocations, expiry events and defects are never updated or deleted.
TRUNCATE is not refused here (pytest-django flushes with it; the audit table is the one that refuses it).
"""
from django.db import migrations

AUTHORIZATION_COLUMNS = [
    "patient_id", "purpose_id", "form_version_id", "signed_at", "expires_at", "expiry_event", "document_text",
    "text_hash", "signature_name", "signed_by_representative", "representative_authority", "signed_ip",
    "user_agent", "scan", "channel", "recorded_by_id", "created_at",
]
FROZEN_TABLES = ["consent_revocation", "consent_expiryevent", "consent_authorizationdefect"]

POSTGRESQL = """
CREATE FUNCTION consent_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only evidence: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE FUNCTION consent_authorization_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.pdf <> '' OR (to_jsonb(NEW) - 'pdf') IS DISTINCT FROM (to_jsonb(OLD) - 'pdf') THEN
        RAISE EXCEPTION 'consent_authorization is append-only evidence: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER consent_authorization_append_only BEFORE UPDATE OR DELETE ON consent_authorization
    FOR EACH ROW EXECUTE FUNCTION consent_authorization_guard();
CREATE TRIGGER consent_authorizationform_published_immutable BEFORE UPDATE OR DELETE ON consent_authorizationform
    FOR EACH ROW WHEN (OLD.status = 'published') EXECUTE FUNCTION consent_reject_change();
""" + "".join(
    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION consent_reject_change();\n"
    for table in FROZEN_TABLES
)


def _sqlite_statements() -> list[str]:
    changed = " OR ".join(f"NEW.{column} IS NOT OLD.{column}" for column in AUTHORIZATION_COLUMNS)
    statements = [
        "CREATE TRIGGER consent_authorization_no_update BEFORE UPDATE ON consent_authorization "
        f"WHEN OLD.pdf <> '' OR {changed} "
        "BEGIN SELECT RAISE(ABORT, 'consent_authorization is append-only evidence: UPDATE refused'); END;",
        "CREATE TRIGGER consent_authorization_no_delete BEFORE DELETE ON consent_authorization "
        "BEGIN SELECT RAISE(ABORT, 'consent_authorization is append-only evidence: DELETE refused'); END;",
    ]
    for operation in ("UPDATE", "DELETE"):
        statements.append(
            f"CREATE TRIGGER consent_authorizationform_published_no_{operation.lower()} BEFORE {operation} "
            "ON consent_authorizationform WHEN OLD.status = 'published' BEGIN SELECT RAISE(ABORT, "
            f"'consent_authorizationform is append-only evidence: {operation} of a published version refused'); END;"
        )
        for table in FROZEN_TABLES:
            statements.append(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only evidence: {operation} refused'); END;"
            )
    return statements


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL, params=None)
    elif vendor == "sqlite":
        for statement in _sqlite_statements():
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
