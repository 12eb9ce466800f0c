"""The registration point for checks beyond the chain (audit.verification): every verify runs each registered
verifier over the events the walk found intact, prints and keeps what it found, and fails (exit 1, the nightly
alert) at a mismatch. R-SEC-INTEGRITY, R-SEC-AUDIT.

A stand-in verifier is registered here; the real one (the deliveries) is tested in campaigns, since the audit
app, its tests included, imports no other app.
"""
import io

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection

from audit import verification
from audit.models import AuditEvent
from audit.services import audit_record, audit_seal
from audit.tasks import audit_verify_task
from audit.tests.test_chain import triggers_bypassed
from audit.tests.test_tasks import _staff
from conftest import requires_postgresql

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def only_stand_ins(monkeypatch, settings):
    """Each test registers what it needs; the apps' own verifiers are put back afterwards."""
    monkeypatch.setattr(verification, "_verifiers", {})
    settings.AUDIT_CHECKPOINT_KEYS = "test-only-audit-checkpoint-key-for-verifiers-0123456789"
    settings.AUDIT_CHECKPOINT_FILE = ""


class Seen:
    def __init__(self, mismatches: int = 0):
        self.scopes: list[verification.Scope] = []
        self.mismatches = mismatches

    def __call__(self, *, scope):
        self.scopes.append(scope)
        named = [{"thing": 7, "what": "colour"}] if self.mismatches else []
        return verification.CheckResult(name="ignored", compared=3, mismatches=self.mismatches, named=named)


def _events(n: int) -> None:
    for i in range(n):
        audit_record(actor=None, actor_role="system", action="fhir.imported", details={"n": i})
    audit_seal()


def _verify() -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("audit_verify", stdout=out)
    except CommandError as error:
        return error.returncode, out.getvalue() + str(error)
    return 0, out.getvalue()


def test_r_sec_integrity_each_registered_verifier_runs_over_the_events_the_walk_covered():
    seen = Seen()
    verification.verifier_register("things", seen)
    _events(3)

    status, output = _verify()

    assert status == 0, output
    assert seen.scopes == [verification.Scope(after_sequence=0, through_sequence=3)]
    assert "things: 3 compared, 0 mismatches." in output
    verified = AuditEvent.objects.get(action="audit.verified")
    assert verified.details["checks"] == {
        "things": {"ok": True, "compared": 3, "mismatches": 0, "named": []}
    }


def test_r_sec_integrity_a_mismatch_fails_the_verify_and_is_named():
    verification.verifier_register("things", Seen(mismatches=1))
    _events(2)

    status, output = _verify()

    assert status == 1
    assert "things: 3 compared, 1 mismatch." in output and "  thing 7 what colour" in output
    assert "Chain intact through sequence 2" in output  # the chain itself is fine
    check = AuditEvent.objects.get(action="audit.verified").details["checks"]["things"]
    assert (check["ok"], check["named"]) == (False, [{"thing": 7, "what": "colour"}])


@requires_postgresql
def test_r_sec_integrity_after_a_break_verifiers_rely_only_on_the_events_before_it():
    seen = Seen()
    verification.verifier_register("things", seen)
    _events(5)
    with triggers_bypassed() as cursor:
        cursor.execute("UPDATE audit_auditevent SET details = '{\"n\": 30}' WHERE sequence = 3")

    status, _ = _verify()

    assert status == 1
    assert seen.scopes == [verification.Scope(after_sequence=0, through_sequence=2)]


def test_a_verifier_that_fails_is_reported_not_ok_and_the_others_still_run():
    def broken(*, scope):
        with connection.cursor() as cursor:
            cursor.execute("SELECT no_such_column FROM audit_auditevent")

    seen = Seen()
    verification.verifier_register("broken", broken)
    verification.verifier_register("things", seen)
    _events(1)

    status, output = _verify()

    assert status == 1
    assert "broken: the check could not complete (" in output
    assert len(seen.scopes) == 1
    assert AuditEvent.objects.get(action="audit.verified").details["checks"]["broken"]["ok"] is False


def test_r_sec_audit_the_nightly_verify_alerts_at_a_mismatch_with_an_intact_chain():
    officer = _staff("officer@riverside-health.example", "compliance officer")
    verification.verifier_register("things", Seen(mismatches=1))
    _events(2)

    assert audit_verify_task() is False

    (message,) = mail.outbox
    assert message.to == [officer.email]
    assert message.subject == "Audit verification: 1 record differs from the sealed trail"
    assert "things: 3 compared, 1 mismatch." in message.body and "- thing 7 what colour" in message.body
    alerted = AuditEvent.objects.get(action="audit.break_alerted")
    assert alerted.details == {
        "break_sequence": None, "break_reason": None, "recipients": 1, "delivered": 1, "mismatches": {"things": 1}
    }


def test_registering_a_name_again_replaces_it():
    first, second = Seen(), Seen()
    verification.verifier_register("things", first)
    verification.verifier_register("things", second)

    assert verification.verifier_list() == [("things", second)]
