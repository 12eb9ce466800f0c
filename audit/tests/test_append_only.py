"""The audit trail is append-only in the database (R-SEC-AUDIT, R-SEC-INTEGRITY) and holds no PHI
(R-NO-PHI-LEAK)."""
import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent
from audit.services import audit_record
from conftest import requires_postgresql

pytestmark = pytest.mark.django_db


def _one_event() -> AuditEvent:
    return audit_record(actor=None, actor_role="system", action="fhir.imported", object_type="thing", object_id=1)


@requires_postgresql
def test_r_sec_audit_database_refuses_update():
    event = _one_event()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="tampered")

    event.refresh_from_db()
    assert event.action == "fhir.imported"


@requires_postgresql
def test_r_sec_audit_database_refuses_delete():
    event = _one_event()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()

    assert AuditEvent.objects.filter(pk=event.pk).exists()


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_r_sec_audit_database_refuses_truncate_outside_tests():
    """Test connections carry hipaamail.allow_truncate=on so pytest-django can flush; without it, as on a
    production connection, TRUNCATE is refused."""
    _one_event()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL hipaamail.allow_truncate = 'off'")
            cursor.execute("TRUNCATE audit_auditevent CASCADE")

    assert AuditEvent.objects.count() == 1


@pytest.mark.parametrize(
    "details",
    [
        {"email": "ada@example.org"},
        {"name": "Ada Lovelace"},
        {"note": "diagnosed with sleep apnea"},
        {"ids": [1, "ada@example.org"]},
        {"nested": {"address": "12 Elm St"}},
    ],
)
def test_r_no_phi_leak_audit_details_refuse_free_text(details):
    """R-NO-PHI-LEAK: details hold ids, counts and codes; free text cannot pass."""
    with pytest.raises(ValidationError):
        audit_record(actor=None, actor_role="system", action="fhir.imported", details=details)

    assert AuditEvent.objects.count() == 0


def test_audit_details_accept_ids_counts_and_codes():
    event = audit_record(
        actor=None,
        actor_role="system",
        action="fhir.imported",
        details={"sent": [1, 2, 3], "purpose": "cpap-supplies", "blocked": {"revoked": 2}, "ok": True},
    )

    assert event.details["blocked"] == {"revoked": 2}
