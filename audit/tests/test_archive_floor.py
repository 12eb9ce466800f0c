"""Archive floors (R-SEC-INTEGRITY, R-RETAIN-6Y): once the oldest events are archived outside the database and
removed (docs/retention.md), audit_verify starts after the newest signed floor; a prefix removed without one, a
floor that does not match the chain, a forged floor or a gap after the floor are still breaks."""
import json

import pytest
from django.core.management import CommandError, call_command

from audit import chain, checkpoints, selectors
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import ArchiveFloorRefused, audit_archive_floor_create, audit_checkpoint_create
from audit.tests.test_chain import _events, checkpoint_key, triggers_bypassed  # noqa: F401 - the key fixture
from conftest import requires_postgresql

pytestmark = pytest.mark.django_db


def _drop_through(sequence: int) -> None:
    """What detaching and dropping the archived months does to the table (the triggers refuse a DELETE)."""
    with triggers_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE sequence <= %s", [sequence])


def test_a_floor_names_a_sealed_event_and_is_signed_as_a_floor():
    _events(4)

    floor = audit_archive_floor_create(through_sequence=3)

    assert (floor.kind, floor.sequence, floor.head_hash) == (
        AuditCheckpoint.Kind.ARCHIVE_FLOOR, 3, AuditEvent.objects.get(sequence=3).hash,
    )
    assert checkpoints.checkpoint_signature_valid(floor)
    # The same numbers signed as a head checkpoint are another statement: the signatures differ.
    _, as_head = checkpoints.checkpoint_sign(
        sequence=floor.sequence, head_hash=floor.head_hash, created_at=floor.created_at
    )
    assert as_head != floor.signature
    recorded = AuditEvent.objects.get(action="audit.archive_floor_signed")
    assert recorded.details == {"sequence": 3, "key_id": floor.key_id}
    with pytest.raises(ArchiveFloorRefused, match="No sealed audit event has sequence 99"):
        audit_archive_floor_create(through_sequence=99)


def test_while_the_chain_still_starts_at_one_it_is_walked_whole_and_the_floor_checked():
    _events(5)
    audit_archive_floor_create(through_sequence=2)

    result = selectors.audit_chain_walk()

    assert result.ok and result.archive_floor is None
    assert result.events == AuditEvent.objects.filter(sequence__isnull=False).count()
    assert result.checkpoints_checked == 1


@requires_postgresql
def test_r_sec_integrity_after_the_archived_months_are_dropped_verify_starts_after_the_floor(capsys):
    _events(6)
    floor = audit_archive_floor_create(through_sequence=4)
    _events(2)
    head = audit_checkpoint_create()
    _drop_through(4)

    result = selectors.audit_chain_walk()

    assert result.ok, result.first_break
    assert result.archive_floor.pk == floor.pk
    assert result.last_sequence == AuditEvent.objects.filter(sequence__isnull=False).order_by("-sequence")[0].sequence
    assert result.events == result.last_sequence - 4
    assert result.checkpoints_checked == 1  # the head checkpoint; the floor's own event is archived
    call_command("audit_verify")
    out = capsys.readouterr().out
    assert "Events through sequence 4 are archived" in out and "Chain intact" in out
    verified = AuditEvent.objects.filter(action="audit.verified").order_by("-id").first()
    assert verified.details["ok"] is True and verified.details["archived_through"] == 4
    assert head.sequence > 4


@requires_postgresql
def test_r_sec_integrity_a_prefix_removed_without_a_floor_is_a_break():
    _events(6)

    _drop_through(3)

    result = selectors.audit_chain_walk()
    assert (result.first_break.sequence, result.first_break.reason, result.first_break.found) == (1, chain.MISSING, 4)


@requires_postgresql
def test_r_sec_integrity_more_removed_than_the_floor_says_is_a_break():
    _events(6)
    audit_archive_floor_create(through_sequence=2)

    _drop_through(4)

    result = selectors.audit_chain_walk()
    assert (result.first_break.sequence, result.first_break.reason, result.first_break.found) == (3, chain.MISSING, 5)
    with pytest.raises(CommandError, match="sequence 3: no event has this sequence number"):
        call_command("audit_verify", "--read-only")


@requires_postgresql
def test_r_sec_integrity_an_edited_first_event_after_the_floor_is_a_break():
    _events(6)
    audit_archive_floor_create(through_sequence=3)
    _drop_through(3)

    with triggers_bypassed() as cursor:
        cursor.execute("UPDATE audit_auditevent SET object_id = 'x' WHERE sequence = 4")

    result = selectors.audit_chain_walk()
    assert (result.first_break.sequence, result.first_break.reason) == (4, chain.HASH_MISMATCH)


@requires_postgresql
def test_r_sec_integrity_a_floor_that_does_not_link_to_the_chain_is_a_break():
    """Someone who drops a prefix and rewrites the next event's link to a floor they cannot sign is caught:
    here the floor is genuine, but the event after it now links elsewhere (recomputed hash and all)."""
    _events(6)
    audit_archive_floor_create(through_sequence=3)
    _drop_through(3)

    with triggers_bypassed() as cursor:
        cursor.execute("UPDATE audit_auditevent SET prev_hash = %s WHERE sequence = 4", ["0" * 64])

    result = selectors.audit_chain_walk()
    assert (result.first_break.sequence, result.first_break.reason) == (4, chain.LINK_MISMATCH)


@requires_postgresql
def test_r_sec_integrity_a_forged_floor_is_reported_and_not_used():
    _events(6)
    event = AuditEvent.objects.get(sequence=3)
    AuditCheckpoint.objects.create(
        created_at=event.occurred_at, sequence=3, head_hash=event.hash, key_id="k-0000000000000000",
        signature="0" * 64, kind=AuditCheckpoint.Kind.ARCHIVE_FLOOR,
    )
    _drop_through(3)

    result = selectors.audit_chain_walk()

    assert result.archive_floor is None
    assert result.first_break.reason == chain.CHECKPOINT_FORGED or (
        (result.first_break.sequence, result.first_break.reason) == (1, chain.MISSING)
    )
    assert not result.ok


@requires_postgresql
def test_a_floor_copied_to_the_checkpoint_file_serves_when_the_table_lost_it(settings, tmp_path):
    """The floor line in the checkpoint file says its kind; read back, it is a floor again."""
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    _events(6)
    audit_archive_floor_create(through_sequence=3)
    line = json.loads((tmp_path / "checkpoints.jsonl").read_text().splitlines()[0])
    assert line["kind"] == "archive_floor" and line["sequence"] == 3
    _drop_through(3)
    with triggers_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_auditcheckpoint")

    call_command("audit_verify", "--read-only")  # raises CommandError at a break


def test_a_head_checkpoint_line_has_no_kind_so_older_readers_and_lines_agree():
    _events(2)
    line = json.loads(checkpoints.checkpoint_line(audit_checkpoint_create()))
    assert "kind" not in line
