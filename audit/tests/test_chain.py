"""The hash chain and its verification (R-SEC-INTEGRITY, R-SEC-AUDIT).

Tampering is simulated as an attacker with database superuser rights would do it: with the append-only
triggers bypassed (`SET session_replication_role = replica`), then `audit_verify` must name the first broken
sequence. Each test builds the chain through the real services (audit_record, audit_seal, audit_checkpoint).
"""
import contextlib
import json
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit import chain, selectors
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import audit_checkpoint_create, audit_record, audit_seal
from conftest import requires_postgresql

pytestmark = pytest.mark.django_db

CHECKPOINT_KEY = "test-only-audit-checkpoint-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def checkpoint_key(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_KEYS = CHECKPOINT_KEY
    settings.AUDIT_CHECKPOINT_FILE = ""
    return CHECKPOINT_KEY


def _events(n: int, **extra) -> list[AuditEvent]:
    made = [
        audit_record(
            actor=None,
            actor_role="system",
            action="fhir.imported",
            object_type="thing",
            object_id=i,
            patient_id=100 + i,
            ip="10.0.0.7",
            details={"n": i, "ids": [3, 1, 2], "nested": {"zeta": True, "a": None}},
            **extra,
        )
        for i in range(1, n + 1)
    ]
    audit_seal()
    return made


def _sealed() -> list[tuple]:
    return list(AuditEvent.objects.order_by("sequence").values_list("sequence", "prev_hash", "hash"))


@contextlib.contextmanager
def triggers_bypassed():
    """What only a superuser can do: write to the audit table with its triggers switched off."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            yield cursor
        finally:
            cursor.execute("SET session_replication_role = origin")


def _verify() -> chain.WalkResult:
    return selectors.audit_chain_walk()


# --- Sealing ----------------------------------------------------------------------------------------------


def test_r_sec_integrity_sealer_chains_events_gap_free_in_order():
    events = _events(4)

    rows = _sealed()

    assert [sequence for sequence, _, _ in rows] == [1, 2, 3, 4]
    assert rows[0][1] == chain.GENESIS
    assert [prev for _, prev, _ in rows[1:]] == [digest for _, _, digest in rows[:-1]]
    assert len({digest for _, _, digest in rows}) == 4
    assert list(AuditEvent.objects.order_by("sequence").values_list("id", flat=True)) == [e.pk for e in events]


def test_sealing_twice_changes_nothing_and_new_events_continue_the_chain():
    _events(2)
    before = _sealed()

    assert audit_seal() == 0
    audit_record(actor=None, actor_role="system", action="mfa.verified")
    assert audit_seal() == 1

    after = _sealed()
    assert after[:2] == before
    assert after[2][0] == 3 and after[2][1] == before[1][2]


def test_an_event_hash_covers_every_field_and_the_previous_hash():
    """Changing any one input changes the hash: the encoding leaves no field out."""
    base = dict(
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC),
        actor_id=4, actor_role="compliance officer", action="patient.viewed", object_type="patient", object_id="9",
        patient_id=9, ip="10.0.0.1", request_id="abc", details={"authorization_ids": [1, 2]},
    )
    reference = chain.event_hash(sequence=5, content=chain.content_text(**base), prev_hash=chain.GENESIS)
    variants = [
        ("sequence", None), ("prev_hash", None), ("actor_id", 5), ("actor_role", "marketer"), ("action", "x"),
        ("object_type", "campaign"), ("object_id", "10"), ("patient_id", None), ("ip", None), ("request_id", ""),
        ("details", {"authorization_ids": [2, 1]}),
        ("occurred_at", base["occurred_at"].replace(microsecond=6788)),
    ]
    for name, value in variants:
        if name == "sequence":
            digest = chain.event_hash(sequence=6, content=chain.content_text(**base), prev_hash=chain.GENESIS)
        elif name == "prev_hash":
            digest = chain.event_hash(sequence=5, content=chain.content_text(**base), prev_hash="1" * 64)
        else:
            digest = chain.event_hash(
                sequence=5, content=chain.content_text(**(base | {name: value})), prev_hash=chain.GENESIS
            )
        assert digest != reference, name


def test_tab_inside_a_field_cannot_imitate_two_fields():
    """The encoding escapes tabs as COPY does, so moving text across a field boundary changes the hash."""
    common = dict(
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        actor_id=None, object_id="", patient_id=None, ip=None, request_id="", details={},
    )
    one = chain.content_text(actor_role="system", action="a\tb", object_type="", **common)
    two = chain.content_text(actor_role="system", action="a", object_type="b", **common)

    assert one != two


# --- The database guards the chain ------------------------------------------------------------------------


@requires_postgresql
def test_r_sec_audit_a_sealed_event_can_never_be_updated():
    _events(1)

    for statement in (
        "UPDATE audit_auditevent SET hash = repeat('f', 64)",
        "UPDATE audit_auditevent SET sequence = 7",
        "UPDATE audit_auditevent SET sequence = NULL, prev_hash = NULL, hash = NULL",
        "UPDATE audit_auditevent SET action = 'tampered'",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement)

    assert _verify().ok


@requires_postgresql
def test_r_sec_audit_the_seal_path_cannot_change_an_event_content():
    """The only UPDATE allowed is NULL to a value on the three chain columns, with every other column as it
    was: a tamperer cannot use the sealer's path to rewrite an unsealed event."""
    event = audit_record(actor=None, actor_role="system", action="fhir.imported")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE audit_auditevent SET sequence = 1, prev_hash = %s, hash = %s, action = 'tampered' "
                "WHERE id = %s",
                [chain.GENESIS, "f" * 64, event.pk],
            )
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:  # half a seal is no seal
            cursor.execute("UPDATE audit_auditevent SET sequence = 1 WHERE id = %s", [event.pk])

    assert audit_seal() == 1
    assert AuditEvent.objects.get(pk=event.pk).action == "fhir.imported"


@requires_postgresql
def test_r_sec_audit_an_event_cannot_be_inserted_already_sealed():
    with pytest.raises(DatabaseError, match="inserted unsealed"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO audit_auditevent (occurred_at, actor_role, action, object_type, object_id, details, "
                "request_id, sequence, prev_hash, hash) VALUES (now(), 'system', 'forged', '', '', '{}', '', 1, %s, %s)",
                [chain.GENESIS, "f" * 64],
            )

    assert not AuditEvent.objects.exists()


@requires_postgresql
def test_r_sec_audit_checkpoints_are_append_only():
    _events(1)
    checkpoint = audit_checkpoint_create()

    for statement in ("UPDATE audit_auditcheckpoint SET sequence = 99", "DELETE FROM audit_auditcheckpoint"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement)

    assert AuditCheckpoint.objects.get().sequence == checkpoint.sequence


# --- audit_verify detects tampering -----------------------------------------------------------------------


def test_r_sec_integrity_an_intact_chain_verifies(capsys):
    _events(6)
    audit_checkpoint_create()

    call_command("audit_verify")

    out = capsys.readouterr().out
    assert "Chain intact through sequence 7" in out  # six events and the checkpoint's own event
    verified = AuditEvent.objects.filter(action="audit.verified").get()
    # "checks": what the registered verifiers found (audit.verification; test_verification.py).
    assert all(check["ok"] for check in verified.details.get("checks", {}).values())
    assert {key: value for key, value in verified.details.items() if key != "checks"} == {
        "ok": True, "events": 7, "through_sequence": 7, "checkpoints": 1, "break_sequence": None, "break_reason": None,
        "archived_through": 0,
    }


@requires_postgresql
def test_r_sec_integrity_verify_detects_an_edited_row():
    _events(5)

    with triggers_bypassed() as cursor:
        cursor.execute("UPDATE audit_auditevent SET details = '{\"n\": 30}' WHERE sequence = 3")

    result = _verify()
    assert (result.first_break.sequence, result.first_break.reason) == (3, chain.HASH_MISMATCH)
    with pytest.raises(CommandError, match="Chain broken at sequence 3: the event's stored hash does not match"):
        call_command("audit_verify")
    assert AuditEvent.objects.get(action="audit.verified").details["break_sequence"] == 3


@requires_postgresql
def test_r_sec_integrity_verify_detects_an_edited_row_whose_hash_was_recomputed():
    """Recomputing the edited event's hash breaks the link to the next event."""
    _events(5)
    row = AuditEvent.objects.filter(sequence=3).values_list("prev_hash", *chain.CONTENT_COLUMNS).get()
    values = dict(zip(chain.CONTENT_COLUMNS, row[1:])) | {"action": "nothing.to.see"}
    forged = chain.event_hash(sequence=3, prev_hash=row[0], content=chain.content_text(**values))

    with triggers_bypassed() as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET action = 'nothing.to.see', hash = %s WHERE sequence = 3", [forged]
        )

    result = _verify()
    assert (result.first_break.sequence, result.first_break.reason) == (4, chain.LINK_MISMATCH)


@requires_postgresql
def test_r_sec_integrity_a_checkpoint_catches_a_rewritten_tail():
    """An attacker who rewrites an event and recomputes every hash after it leaves a consistent chain; the
    signed checkpoint taken before still names the old head hash."""
    _events(5)
    checkpoint = audit_checkpoint_create()  # sequence 5; its own event is 6
    rows = list(
        AuditEvent.objects.filter(sequence__isnull=False)
        .order_by("sequence")
        .values_list("id", "sequence", *chain.CONTENT_COLUMNS)
    )
    previous = chain.GENESIS
    with triggers_bypassed() as cursor:
        for event_id, sequence, *content in rows:
            values = dict(zip(chain.CONTENT_COLUMNS, content))
            if sequence == 2:
                values["action"] = "rewritten"
            digest = chain.event_hash(sequence=sequence, content=chain.content_text(**values), prev_hash=previous)
            cursor.execute(
                "UPDATE audit_auditevent SET action = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [values["action"], previous, digest, event_id],
            )
            previous = digest

    result = _verify()
    assert (result.first_break.sequence, result.first_break.reason, result.first_break.checkpoint_id) == (
        5, chain.CHECKPOINT_MISMATCH, checkpoint.pk,
    )


@requires_postgresql
def test_r_sec_integrity_verify_detects_a_deleted_middle_row():
    _events(5)

    with triggers_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE sequence = 3")

    result = _verify()
    assert (result.first_break.sequence, result.first_break.reason, result.first_break.found) == (3, chain.MISSING, 4)
    with pytest.raises(CommandError, match="sequence 3: no event has this sequence number"):
        call_command("audit_verify", "--read-only")


@requires_postgresql
def test_r_sec_integrity_verify_detects_a_deleted_and_renumbered_middle_row():
    """Closing the gap by renumbering the later events leaves their links pointing at the deleted one."""
    _events(5)

    with triggers_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE sequence = 3")
        cursor.execute("UPDATE audit_auditevent SET sequence = sequence - 1 WHERE sequence > 3")

    result = _verify()
    assert (result.first_break.sequence, result.first_break.reason) == (3, chain.LINK_MISMATCH)


@requires_postgresql
def test_r_sec_integrity_verify_detects_swapped_rows():
    _events(5)

    with triggers_bypassed() as cursor:  # exchange the places of events 2 and 4 in the chain
        cursor.execute("UPDATE audit_auditevent SET sequence = -2 WHERE sequence = 2")
        cursor.execute("UPDATE audit_auditevent SET sequence = 2 WHERE sequence = 4")
        cursor.execute("UPDATE audit_auditevent SET sequence = 4 WHERE sequence = -2")

    result = _verify()
    assert (result.first_break.sequence, result.first_break.reason) == (2, chain.LINK_MISMATCH)


@requires_postgresql
def test_r_sec_integrity_verify_detects_swapped_contents():
    """Swapping what two events say while leaving their chain columns in place breaks both hashes."""
    _events(5)

    with triggers_bypassed() as cursor:
        cursor.execute(
            """UPDATE audit_auditevent AS a SET object_id = b.object_id, patient_id = b.patient_id, details = b.details
                 FROM audit_auditevent AS b
                WHERE (a.sequence, b.sequence) IN ((2, 4), (4, 2))"""
        )

    result = _verify()
    assert (result.first_break.sequence, result.first_break.reason) == (2, chain.HASH_MISMATCH)


@requires_postgresql
def test_r_sec_integrity_verify_detects_a_truncated_tail_against_a_checkpoint():
    _events(5)
    checkpoint = audit_checkpoint_create()  # signs sequence 5
    _events(2)  # 7 and 8 come after the checkpoint's own event (6)
    assert _verify().ok

    with triggers_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE sequence >= 4")

    result = _verify()
    assert (result.first_break.sequence, result.first_break.reason, result.first_break.checkpoint_id) == (
        4, chain.TRUNCATED, checkpoint.pk,
    )
    with pytest.raises(CommandError, match="sequence 4: the chain ends before a signed checkpoint"):
        call_command("audit_verify", "--read-only")


@requires_postgresql
def test_r_sec_integrity_a_checkpoint_copy_outside_the_database_catches_a_cut_with_checkpoints_deleted(
    settings, tmp_path
):
    """Whoever cuts the tail may delete the checkpoint rows too; the copy in the checkpoint file remains."""
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    _events(5)
    audit_checkpoint_create()
    line = json.loads((tmp_path / "checkpoints.jsonl").read_text().splitlines()[0])
    assert line["sequence"] == 5 and len(line["signature"]) == 64

    with triggers_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE sequence >= 5")
        cursor.execute("DELETE FROM audit_auditcheckpoint")

    with pytest.raises(CommandError, match="sequence 5: the chain ends before a signed checkpoint"):
        call_command("audit_verify", "--read-only")
    settings.AUDIT_CHECKPOINT_FILE = ""
    with pytest.raises(CommandError, match="sequence 5: the chain ends before"):
        call_command("audit_verify", "--read-only", "--checkpoint-file", str(tmp_path / "checkpoints.jsonl"))


def test_r_sec_integrity_a_forged_checkpoint_is_reported(settings):
    _events(3)
    AuditCheckpoint.objects.create(
        created_at=AuditEvent.objects.get(sequence=3).occurred_at,
        sequence=3,
        head_hash=AuditEvent.objects.get(sequence=3).hash,
        key_id="k-0000000000000000",
        signature="0" * 64,
    )

    result = _verify()

    assert (result.first_break.sequence, result.first_break.reason) == (3, chain.CHECKPOINT_FORGED)


def test_a_checkpoint_signed_with_a_retired_key_still_verifies_after_rotation(settings):
    _events(2)
    audit_checkpoint_create()
    settings.AUDIT_CHECKPOINT_KEYS = "a-brand-new-audit-checkpoint-key-abcdefghij," + CHECKPOINT_KEY

    assert _verify().ok
    settings.AUDIT_CHECKPOINT_KEYS = "a-brand-new-audit-checkpoint-key-abcdefghij"
    assert _verify().first_break.reason == chain.CHECKPOINT_FORGED


# --- The encoding matches what PostgreSQL writes ----------------------------------------------------------

_codes = st.from_regex(r"[A-Za-z0-9_.:/\-]{0,12}", fullmatch=True)
_details = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**62), max_value=2**62) | _codes,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_codes, children, max_size=4),
    max_leaves=12,
)


@requires_postgresql
@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(details=st.dictionaries(_codes, _details, max_size=5))
def test_jsonb_text_is_what_postgresql_writes(details):
    """The SQLite demo's sealer writes details the way PostgreSQL's jsonb does; hold the two equal."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb::text", [json.dumps(details)])
        assert cursor.fetchone()[0] == chain.jsonb_text(details)


@requires_postgresql
def test_content_text_is_what_copy_writes():
    for ip in ("10.0.0.7", "2001:db8::1", None):
        audit_record(
            actor=None, actor_role="patient", action="fhir.imported", object_type="patient", object_id="12",
            patient_id=12, ip=ip, request_id="tab\there back\\slash",  # escaped by COPY, and by content_text
            details={"bb": [1, "x"], "a": {"c": False}, "ccc": None},
        )
    with transaction.atomic(), connection.cursor() as cursor:
        selectors.copy_session_settings(cursor)
        data = bytearray()
        with cursor.cursor.copy(
            f"COPY (SELECT {', '.join(chain.CONTENT_COLUMNS)} FROM audit_auditevent ORDER BY id) TO STDOUT"
        ) as copy:
            for block in copy:
                data += block
    written = bytes(data).rstrip(b"\n").split(b"\n")

    from_python = [
        chain.content_text(**dict(zip(chain.CONTENT_COLUMNS, row)))
        for row in AuditEvent.objects.order_by("id").values_list(*chain.CONTENT_COLUMNS)
    ]
    assert from_python == written


def test_audit_record_refuses_a_patient_id_that_is_not_a_number():
    with pytest.raises(ValidationError):
        audit_record(actor=None, actor_role="system", action="fhir.imported", patient_id="12")
    assert not AuditEvent.objects.exists()
