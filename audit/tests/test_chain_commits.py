"""The chain with real commits (PostgreSQL): events are sealed after their transaction commits, concurrent
writers never leave a gap or a double, and the verifier's parallel walk finds the same breaks as one stream
(R-SEC-INTEGRITY)."""
import threading
import time

import pytest
from django.db import connection, connections, transaction

from audit import chain, selectors
from audit.models import AuditEvent
from audit.services import audit_archive_floor_create, audit_record, audit_seal
from conftest import requires_postgresql

pytestmark = [requires_postgresql, pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def _record(action: str = "fhir.imported", **extra) -> AuditEvent:
    return audit_record(actor=None, actor_role="system", action=action, details={"ids": [1, 2]}, **extra)


def test_an_event_is_sealed_when_its_transaction_commits():
    with transaction.atomic():
        event = _record()
        _record()
        assert AuditEvent.objects.get(pk=event.pk).sequence is None  # not before the commit

    assert list(AuditEvent.objects.order_by("id").values_list("sequence", flat=True)) == [1, 2]
    lone = _record()  # autocommit: sealed at once
    assert AuditEvent.objects.get(pk=lone.pk).sequence == 3


def test_a_rolled_back_event_leaves_no_gap():
    _record()
    with pytest.raises(RuntimeError), transaction.atomic():
        _record("purpose.created")
        raise RuntimeError
    _record()

    assert list(AuditEvent.objects.order_by("sequence").values_list("sequence", "action")) == [
        (1, "fhir.imported"), (2, "fhir.imported"),
    ]
    assert selectors.audit_chain_walk().ok


def _backends(pids: list[int]) -> dict[int, tuple[str, bool]]:
    """These server backends' state (pg_stat_activity) and whether each is waiting for a lock that another of them
    holds (any lock: a row, a table, an advisory lock; pg_blocking_pids)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, pg_blocking_pids(pid) && %s::int[] FROM pg_stat_activity WHERE pid = ANY(%s)",
            [pids, pids],
        )
        return {pid: (state, blocked) for pid, state, blocked in cursor.fetchall()}


def test_r_sec_integrity_concurrent_writers_get_a_gap_free_chain_without_waiting_on_it():
    """Four writers commit events at once, each holding its transaction open after writing (as the sender does
    while it talks to the mail server). Nobody waits for the chain: all four are inside their transactions
    together, each with its event written and none committed, and the database never shows one of them waiting
    for a lock on the way there; afterwards every event is sealed exactly once, 1..N, and the chain verifies.

    That nobody waits is the database's answer (pg_blocking_pids), not a timeout: a writer made to wait for
    another's uncommitted event never reaches the barrier and is seen blocked by it, while one that is merely slow
    (a loaded machine) is waited for."""
    writers, per_writer = 4, 12
    inside = threading.Barrier(writers + 1)  # the four writers, and this thread once it has looked at them
    pids: dict[int, int] = {}
    errors = []

    def write(n: int) -> None:
        try:
            for i in range(per_writer):
                with transaction.atomic():
                    if i == 0:
                        connection.ensure_connection()
                        pids[n] = connection.connection.info.backend_pid
                    audit_record(actor=None, actor_role="system", action="report.exported", details={"w": n, "i": i})
                    if i == 0:
                        inside.wait()  # all four hold an uncommitted event at the same time
                    time.sleep(0.005)
        except Exception as error:  # reported below; a thread's exception is otherwise lost
            errors.append(error)
            inside.abort()  # nobody waits for a writer that is gone
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    blocked, states, committed = [], set(), None
    harness_deadline = time.monotonic() + 300  # only so that a wedged run ends: not what the test measures
    while not inside.broken:
        arrived = inside.n_waiting == writers  # all four at the barrier, inside their transactions
        seen = _backends(list(pids.values()))
        blocked = [pid for pid, (_, waits) in seen.items() if waits]
        if blocked:
            inside.abort()
        elif arrived:
            states = {state for state, _ in seen.values()} if len(seen) == writers else set()
            committed = AuditEvent.objects.count()
            inside.wait()
            break
        if time.monotonic() > harness_deadline:
            inside.abort()
            raise AssertionError(f"harness: the writers were still on their way after 300 s: {errors}")
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    audit_seal()  # anything a writer's own seal left to the next one

    assert blocked == [], f"backends {blocked} waited for a lock another writer held with its event"
    assert errors == []
    assert states == {"idle in transaction"} and committed == 0  # four open transactions, no event committed
    sequences = list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, writers * per_writer + 1))
    assert selectors.audit_chain_walk().ok


@pytest.fixture
def stretches(monkeypatch):
    """A chain of 30 events, walked in three stretches (1-10, 11-20, 21-30) as a long chain would be."""
    monkeypatch.setattr(selectors, "PARALLEL_MIN_EVENTS", 1)
    for i in range(30):
        _record(patient_id=i + 1)
    audit_seal()
    return lambda: selectors.audit_chain_walk(workers=3)


def _tamper(*statements: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        for statement in statements:
            cursor.execute(statement)
        cursor.execute("SET session_replication_role = origin")


def test_the_parallel_walk_passes_an_intact_chain(stretches):
    result = stretches()

    assert result.ok and result.events == 30 and result.last_sequence == 30
    assert result.last_hash == AuditEvent.objects.get(sequence=30).hash


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        (["DELETE FROM audit_auditevent WHERE sequence = 11"], (11, chain.MISSING)),  # first of a stretch
        (["DELETE FROM audit_auditevent WHERE sequence = 10"], (10, chain.MISSING)),  # last of a stretch
        (["UPDATE audit_auditevent SET patient_id = 99 WHERE sequence = 25"], (25, chain.HASH_MISMATCH)),
        (["UPDATE audit_auditevent SET prev_hash = repeat('a', 64) WHERE sequence = 21"], (21, chain.LINK_MISMATCH)),
        (["DELETE FROM audit_auditevent WHERE sequence = 30"], None),  # the newest: only a checkpoint tells
    ],
    ids=["first-of-stretch", "last-of-stretch", "edited", "relinked-at-boundary", "newest-without-checkpoint"],
)
def test_r_sec_integrity_the_parallel_walk_finds_the_first_break(stretches, statements, expected):
    _tamper(*statements)

    result = stretches()

    found = (result.first_break.sequence, result.first_break.reason) if result.first_break else None
    assert found == expected


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        ([], None),
        (["UPDATE audit_auditevent SET prev_hash = repeat('a', 64) WHERE sequence = 13"], (13, chain.LINK_MISMATCH)),
        (["DELETE FROM audit_auditevent WHERE sequence = 13"], (13, chain.MISSING)),
        (["UPDATE audit_auditevent SET patient_id = 99 WHERE sequence = 22"], (22, chain.HASH_MISMATCH)),
    ],
    ids=["intact", "relinked-first", "missing-first", "edited-later"],
)
def test_r_sec_integrity_the_parallel_walk_starts_after_an_archive_floor(stretches, settings, statements, expected):
    """Months archived and dropped (docs/retention.md): the stretches cover 13..head and the first links to the
    signed floor's hash."""
    settings.AUDIT_CHECKPOINT_KEYS = "test-only-audit-checkpoint-key-0123456789abcdef"
    floor = audit_archive_floor_create(through_sequence=12)
    _tamper("DELETE FROM audit_auditevent WHERE sequence <= 12", *statements)

    result = stretches()

    found = (result.first_break.sequence, result.first_break.reason) if result.first_break else None
    assert found == expected
    assert result.archive_floor is not None and result.archive_floor.pk == floor.pk
    if expected is None:
        assert result.events == AuditEvent.objects.filter(sequence__isnull=False).count()
