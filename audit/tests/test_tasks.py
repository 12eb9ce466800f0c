"""The audit chain on a schedule: the hourly checkpoint and the nightly verify (R-SEC-INTEGRITY, R-SEC-AUDIT).

The tasks are called in this process, as a worker would run them. Tampering is simulated as in test_chain.py: a
row edited with the append-only triggers bypassed.
"""
import importlib
import logging

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail

from audit import chain, checkpoints, selectors
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import audit_record, audit_seal
from audit.tasks import audit_checkpoint_task, audit_verify_task
from audit.tests.test_chain import triggers_bypassed
from conftest import requires_postgresql

pytestmark = pytest.mark.django_db

CHECKPOINT_KEY = "test-only-audit-checkpoint-key-for-tasks-0123456789"
PATIENT_NAME = "Josephine Quarterly"
PATIENT_EMAIL = "josephine.quarterly@patients.example"


@pytest.fixture(autouse=True)
def checkpoint_key(settings):
    settings.AUDIT_CHECKPOINT_KEYS = CHECKPOINT_KEY
    settings.AUDIT_CHECKPOINT_FILE = ""
    settings.SITE_URL = "https://mail.riverside-health.example"


def _events(n: int) -> None:
    for i in range(1, n + 1):
        audit_record(actor=None, actor_role="system", action="fhir.imported", object_type="thing", object_id=i,
                     patient_id=500 + i, details={"n": i})
    audit_seal()


def _staff(email: str, *roles: str, username: str = "", is_active: bool = True, is_superuser: bool = False):
    user = get_user_model().objects.create_user(
        username=username or email.split("@")[0], email=email, password="x", is_active=is_active,
        is_superuser=is_superuser,
    )
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


# --- The hourly checkpoint ------------------------------------------------------------------------------------


def test_r_sec_integrity_checkpoint_task_signs_the_head_and_verify_accepts_it(caplog):
    _events(3)

    with caplog.at_level(logging.INFO, logger="audit.tasks"):
        audit_checkpoint_task()

    checkpoint = AuditCheckpoint.objects.get()
    assert (checkpoint.sequence, checkpoint.head_hash) == (3, AuditEvent.objects.get(sequence=3).hash)
    assert checkpoint.key_id == checkpoints.key_id(CHECKPOINT_KEY.encode())  # the dedicated key, not SECRET_KEY's
    assert checkpoints.checkpoint_signature_valid(checkpoint)
    assert AuditEvent.objects.filter(action="audit.checkpointed", object_id=str(checkpoint.pk)).count() == 1
    assert [r.getMessage() for r in caplog.records] == [f"audit: checkpoint {checkpoints.checkpoint_line(checkpoint)}"]
    audit_seal()
    result = selectors.audit_chain_walk()
    assert (result.ok, result.checkpoints_checked) == (True, 1)


# --- The nightly verify ---------------------------------------------------------------------------------------


def test_r_sec_integrity_verify_task_records_an_intact_chain_and_alerts_no_one(caplog):
    _staff("officer@riverside-health.example", "compliance officer")
    _events(4)
    audit_checkpoint_task()

    with caplog.at_level(logging.INFO):
        intact = audit_verify_task()

    assert intact is True
    verified = AuditEvent.objects.get(action="audit.verified")
    # "checks": what the registered verifiers found (audit.verification; test_verification.py).
    assert all(check["ok"] for check in verified.details.get("checks", {}).values())
    assert {key: value for key, value in verified.details.items() if key != "checks"} == {
        "ok": True, "events": 5, "through_sequence": 5, "checkpoints": 1, "break_sequence": None, "break_reason": None,
        "archived_through": 0,
    }
    assert verified.actor_id is None and verified.actor_role == "system"
    assert mail.outbox == []
    assert not AuditEvent.objects.filter(action="audit.break_alerted").exists()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@requires_postgresql
def test_r_sec_audit_verify_task_at_a_break_records_it_logs_an_error_and_mails_each_audit_reader_once(caplog):
    """R-SEC-AUDIT, R-SEC-INTEGRITY: a break found at night reaches every active compliance officer and
    administrator by mail, one message each; marketers and inactive accounts get none; the log and the mail
    name the sequence and the reason code only, never what the broken row holds."""
    officer = _staff("officer@riverside-health.example", "compliance officer")
    administrator = _staff("admin@riverside-health.example", "administrator")
    both = _staff("both@riverside-health.example", "compliance officer", "administrator")
    superuser = _staff("root@riverside-health.example", is_superuser=True)
    _staff("marketer@riverside-health.example", "marketer")
    _staff("gone@riverside-health.example", "compliance officer", is_active=False)
    _staff("", "administrator", username="no-address")  # no address to write to
    _events(5)
    audit_checkpoint_task()
    with triggers_bypassed() as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET details = %s::jsonb WHERE sequence = 3",
            [f'{{"name": "{PATIENT_NAME}", "email": "{PATIENT_EMAIL}"}}'],
        )

    with caplog.at_level(logging.INFO):
        intact = audit_verify_task()

    assert intact is False
    verified = AuditEvent.objects.get(action="audit.verified")
    assert (verified.details["ok"], verified.details["break_sequence"], verified.details["break_reason"]) == (
        False, 3, chain.HASH_MISMATCH,
    )
    alerted = AuditEvent.objects.get(action="audit.break_alerted")
    assert alerted.details == {"break_sequence": 3, "break_reason": chain.HASH_MISMATCH, "recipients": 4, "delivered": 4}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.name, r.getMessage()) for r in errors] == [
        ("audit.services", "audit: chain broken at sequence 3 (hash_mismatch)")
    ]
    assert sorted(tuple(message.to) for message in mail.outbox) == sorted(
        (user.email,) for user in (officer, administrator, both, superuser)
    )
    for message in mail.outbox:
        assert message.from_email == django_settings.DEFAULT_FROM_EMAIL
        assert message.subject == "Audit trail broken at sequence 3 (hash_mismatch)"
        assert "broken at sequence 3 (reason: hash_mismatch)" in message.body
        assert "https://mail.riverside-health.example/audit/" in message.body
        (html, mimetype), = message.alternatives
        assert mimetype == "text/html" and 'href="https://mail.riverside-health.example/audit/"' in html
    everything_said = " ".join([r.getMessage() for r in caplog.records] + [m.subject + m.body + m.alternatives[0][0] for m in mail.outbox])
    for phi in (PATIENT_NAME, "Josephine", PATIENT_EMAIL, "patients.example"):
        assert phi not in everything_said


@requires_postgresql
def test_r_sec_integrity_verify_task_catches_a_cut_tail_through_the_hourly_checkpoint():
    _staff("officer@riverside-health.example", "compliance officer")
    _events(4)
    audit_checkpoint_task()  # signs sequence 4; its own event is 5
    audit_seal()
    with triggers_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE sequence >= 4")

    assert audit_verify_task() is False

    verified = AuditEvent.objects.get(action="audit.verified")
    assert (verified.details["break_sequence"], verified.details["break_reason"]) == (4, chain.TRUNCATED)
    assert [message.to for message in mail.outbox] == [["officer@riverside-health.example"]]


# --- The schedule ---------------------------------------------------------------------------------------------


def test_r_sec_integrity_beat_schedule_names_tasks_that_exist():
    """Every task beat sends exists under the name it is sent as; the audit ones are on the schedule, hourly and
    nightly, and go to a queue the demo's worker consumes."""
    # The Celery app lives in the project package, which the audit app may not import (lint-imports).
    app = importlib.import_module("hipaamail.celery").app
    app.loader.import_default_modules()
    schedule = django_settings.CELERY_BEAT_SCHEDULE

    for entry in schedule.values():
        # Names are frozen (hipaamail/tests/test_task_names.py), so a beat job's name need not be its module path.
        assert entry["task"] in app.tasks
        assert app.tasks[entry["task"]].name == entry["task"]

    by_task = {entry["task"]: entry["schedule"] for entry in schedule.values()}
    hourly = by_task["audit.tasks.audit_checkpoint_task"]
    nightly = by_task["audit.tasks.audit_verify_task"]
    assert (hourly.minute, hourly.hour) == ({0}, set(range(24)))
    assert (nightly.minute, nightly.hour) == ({30}, {2})
    for name in ("audit.tasks.audit_checkpoint_task", "audit.tasks.audit_verify_task"):
        assert app.amqp.router.route({}, name)["queue"].name == "campaigns"
