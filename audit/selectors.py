"""Reading the audit trail: filtered pages, streaming iteration, the chain head, the chain's status.

Order: newest first by (occurred_at, id) on pages, oldest first when streaming. Every filter has an index that
ends in (occurred_at, id) (audit.models), and a page continues from the (occurred_at, id) of the last row it
showed (keyset pagination: `WHERE (occurred_at, id) < (…) ORDER BY occurred_at DESC, id DESC LIMIT n`), so a
page costs the same at any depth. Events appear at once, before the sealer has chained them; the page shows
their sequence when they have one.
"""
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit import actions, chain, checkpoints, sentences
from audit.models import AuditCheckpoint, AuditEvent

PAGE_SIZE = 50
VERIFIED_ACTION = actions.AUDIT_VERIFIED
CHECKPOINTED_ACTION = actions.AUDIT_CHECKPOINTED


@dataclass(frozen=True)
class AuditFilters:
    """What a compliance officer may filter by; every field optional. Dates are whole days in the site's
    time zone, `end` included."""

    actor_id: int | None = None
    role: str = ""  # a key of ROLE_FILTERS
    kind: str = ""  # a key of audit.sentences.KINDS
    action: str = ""
    object_type: str = ""
    object_id: int | None = None
    patient_id: int | None = None
    campaign_id: int | None = None
    start: date | None = None
    end: date | None = None

    def is_empty(self) -> bool:
        return self == AuditFilters()


# The roles an event's actor can have acted in (AuditEvent.actor_role: a user's group names, joined by commas, or a
# kind of actor that is not a user), in words, with the condition each is.
ROLE_FILTERS: dict[str, tuple[str, Q]] = {
    "marketer": (_("Marketer"), Q(actor_role__contains="marketer")),
    "compliance": (_("Compliance officer"), Q(actor_role__contains="compliance officer")),
    "administrator": (_("Administrator"), Q(actor_role__contains="administrator") | Q(actor_role=actions.SUPERUSER)),
    "patient": (_("Patient"), Q(actor_role=actions.PATIENT)),
    "system": (_("The system"), Q(actor_role=actions.SYSTEM)),
    "integration": (
        _("A connected system or API key"),
        Q(actor_role=actions.INTEGRATION) | Q(actor_role__startswith=actions.API_KEY_PREFIX),
    ),
    "anonymous": (_("Someone not signed in"), Q(actor_role=actions.ANONYMOUS)),
}


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def audit_event_queryset(filters: AuditFilters):
    """Events matching `filters`, unordered. Each single filter is an equality on the leading column(s) of
    its own index, and the date range a range on the column after it."""
    events = AuditEvent.objects.all()
    if filters.actor_id is not None:
        events = events.filter(actor_id=filters.actor_id)
    if filters.role in ROLE_FILTERS:
        events = events.filter(ROLE_FILTERS[filters.role][1])
    if filters.kind:
        events = events.filter(action__in=sentences.kind_actions(filters.kind))
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.object_type:
        events = events.filter(object_type=filters.object_type)
        if filters.object_id is not None:
            events = events.filter(object_id=str(filters.object_id))
    if filters.patient_id is not None:
        events = events.filter(patient_id=filters.patient_id)
    if filters.campaign_id is not None:
        events = events.filter(object_type="campaign", object_id=str(filters.campaign_id))
    if filters.start is not None:
        events = events.filter(occurred_at__gte=_day_start(filters.start))
    if filters.end is not None:
        events = events.filter(occurred_at__lt=_day_start(filters.end + timedelta(days=1)))
    return events


@dataclass(frozen=True)
class EventPage:
    events: list  # AuditEvent, newest first, actor loaded
    older: int | None  # the id to continue from with before=…, when older events exist
    newer: int | None  # the id to go back from with after=…, when newer events exist


def _key(event_id: int) -> tuple[datetime, int] | None:
    occurred_at = AuditEvent.objects.filter(pk=event_id).values_list("occurred_at", flat=True).first()
    return (occurred_at, event_id) if occurred_at is not None else None


def audit_event_page(
    filters: AuditFilters, *, before: int | None = None, after: int | None = None, size: int = PAGE_SIZE
) -> EventPage:
    """One page of events, newest first: the newest, or the ones just older than event `before`, or just
    newer than event `after` (its id, from the previous page's link; an id that does not exist gives the
    newest page)."""
    events = audit_event_queryset(filters).select_related("actor")
    key = _key(after if after is not None else before) if (after is not None or before is not None) else None
    if key is not None and after is not None:
        rows = list(
            events.extra(where=["(audit_auditevent.occurred_at, audit_auditevent.id) > (%s, %s)"], params=list(key))
            .order_by("occurred_at", "id")[: size + 1]
        )
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        return EventPage(events=rows, older=rows[-1].pk if rows else None, newer=rows[0].pk if more_newer else None)
    if key is not None:
        events = events.extra(where=["(audit_auditevent.occurred_at, audit_auditevent.id) < (%s, %s)"], params=list(key))
    rows = list(events.order_by("-occurred_at", "-id")[: size + 1])
    more_older = len(rows) > size
    rows = rows[:size]
    return EventPage(
        events=rows,
        older=rows[-1].pk if more_older else None,
        newer=rows[0].pk if key is not None and rows else None,
    )


def audit_event_iter(filters: AuditFilters, *, chunk_size: int = 2000) -> Iterator[AuditEvent]:
    """Every event matching `filters`, oldest first by (occurred_at, id), streamed: a server-side cursor on
    PostgreSQL (chunked on SQLite), constant memory however many there are. The actor is loaded with each
    event. Call it inside transaction.atomic() on PostgreSQL when the iteration outlives a request, so
    the cursor sees one snapshot (Django's server-side cursors otherwise use WITH HOLD)."""
    return (
        audit_event_queryset(filters)
        .select_related("actor")
        .order_by("occurred_at", "id")
        .iterator(chunk_size=chunk_size)
    )


def audit_patient_history(patient_id: int, *, before: int | None = None, size: int = 200) -> EventPage:
    """A patient's events, newest first (all of them on one page for nearly every patient)."""
    return audit_event_page(AuditFilters(patient_id=patient_id), before=before, size=size)


def audit_action_list() -> list[str]:
    """Every action that occurs in the trail, for the filter's choices. On PostgreSQL a skip scan of the
    action index (one index probe per distinct action), so it stays instant at millions of events."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH RECURSIVE actions(action) AS (
                    (SELECT action FROM audit_auditevent ORDER BY action LIMIT 1)
                    UNION ALL
                    SELECT (SELECT e.action FROM audit_auditevent e WHERE e.action > a.action
                             ORDER BY e.action LIMIT 1)
                      FROM actions a WHERE a.action IS NOT NULL
                )
                SELECT action FROM actions WHERE action IS NOT NULL
                """
            )
            return [row[0] for row in cursor.fetchall()]
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())


def audit_object_type_list() -> list[str]:
    """Every kind of object the trail names, for the filter's choices (a skip scan of the object index on
    PostgreSQL, as audit_action_list)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH RECURSIVE kinds(object_type) AS (
                    (SELECT object_type FROM audit_auditevent ORDER BY object_type LIMIT 1)
                    UNION ALL
                    SELECT (SELECT e.object_type FROM audit_auditevent e WHERE e.object_type > k.object_type
                             ORDER BY e.object_type LIMIT 1)
                      FROM kinds k WHERE k.object_type IS NOT NULL
                )
                SELECT object_type FROM kinds WHERE object_type IS NOT NULL AND object_type <> ''
                """
            )
            return [row[0] for row in cursor.fetchall()]
    return [kind for kind in AuditEvent.objects.order_by("object_type").values_list("object_type", flat=True).distinct() if kind]


def audit_actor_list() -> list:
    """The users who appear as actors (staff who left included), by email, for the filter's choices."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH RECURSIVE actors(actor_id) AS (
                    (SELECT actor_id FROM audit_auditevent WHERE actor_id IS NOT NULL ORDER BY actor_id LIMIT 1)
                    UNION ALL
                    SELECT (SELECT e.actor_id FROM audit_auditevent e WHERE e.actor_id > a.actor_id
                             ORDER BY e.actor_id LIMIT 1)
                      FROM actors a WHERE a.actor_id IS NOT NULL
                )
                SELECT actor_id FROM actors WHERE actor_id IS NOT NULL
                """
            )
            ids = [row[0] for row in cursor.fetchall()]
    else:
        ids = list(AuditEvent.objects.exclude(actor=None).values_list("actor_id", flat=True).distinct())
    return list(get_user_model().objects.filter(pk__in=ids).order_by("email"))


# --- The chain --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainHead:
    """The newest sealed event: what a report or a checkpoint names as "the chain at this moment"."""

    sequence: int  # 0 when nothing is sealed yet
    hash: str  # chain.GENESIS when nothing is sealed yet
    event_id: int | None = None
    occurred_at: datetime | None = None


def audit_chain_head() -> ChainHead:
    """The head of the sealed chain. Events committed in the last instant may not be sealed yet; call
    audit.services.audit_seal() first to include them (audit_checkpoint does)."""
    row = (
        AuditEvent.objects.filter(sequence__isnull=False)
        .order_by("-sequence")
        .values_list("sequence", "hash", "id", "occurred_at")
        .first()
    )
    if row is None:
        return ChainHead(sequence=0, hash=chain.GENESIS)
    return ChainHead(sequence=row[0], hash=row[1], event_id=row[2], occurred_at=row[3])


@dataclass(frozen=True)
class ChainStatus:
    head: ChainHead
    unsealed: int
    last_verify: AuditEvent | None
    last_checkpoint: AuditCheckpoint | None


def audit_chain_status() -> ChainStatus:
    """For the audit pages: the head, how many events wait for the sealer, the last verify, the last checkpoint."""
    return ChainStatus(
        head=audit_chain_head(),
        unsealed=AuditEvent.objects.filter(sequence__isnull=True).count(),
        last_verify=AuditEvent.objects.filter(action=VERIFIED_ACTION).order_by("-occurred_at", "-id").first(),
        last_checkpoint=AuditCheckpoint.objects.order_by("-id").first(),
    )


def audit_verification_last(*, check: str = "") -> AuditEvent | None:
    """The newest audit.verified event (what the last verify found; audit.services.audit_verification_record),
    or with `check` the newest that ran that registered check (audit.verification), e.g. "deliveries"."""
    events = AuditEvent.objects.filter(action=VERIFIED_ACTION)
    if check:
        events = events.filter(details__checks__has_key=check)
    return events.order_by("-occurred_at", "-id").first()


def copy_session_settings(cursor) -> None:
    """Make COPY write times the way audit.chain encodes them (UTC, ISO), whatever the role's defaults."""
    cursor.execute("SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, MDY', true)")


WALK_COLUMNS = f"sequence, {', '.join(chain.CONTENT_COLUMNS)}, prev_hash, hash"
# Below this many events one stream is as fast as several; above it the walk splits the chain in stretches
# and walks them at once, each on its own connection in one shared snapshot (as pg_dump --jobs does).
PARALLEL_MIN_EVENTS = 200_000
VERIFY_WORKERS = min(4, os.cpu_count() or 1)


def _copy_lines(copy) -> Iterator[bytes]:
    """The lines of a COPY … TO STDOUT as they arrive, without the newlines (constant memory). PostgreSQL
    sends each row as one message, so the usual case is one line per block; any other split is handled."""
    rest = b""
    for block in copy:
        data = bytes(block)
        if not rest and data[-1:] == b"\n" and data.count(b"\n") == 1:
            yield data[:-1]
            continue
        lines = (rest + data).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _sealed_lines_postgresql(after: int = 0) -> Iterator[bytes]:
    """Sealed events after sequence `after` in sequence order, one line each, streamed by PostgreSQL's
    COPY … TO STDOUT: the server keeps sending while this process hashes, and no row is turned into Python
    values (docs/benchmarks.md compares it with a named cursor)."""
    with connection.cursor() as cursor:
        copy_session_settings(cursor)
        with cursor.cursor.copy(
            f"COPY (SELECT {WALK_COLUMNS} FROM audit_auditevent WHERE sequence > {int(after)} ORDER BY sequence)"
            " TO STDOUT"
        ) as copy:
            yield from _copy_lines(copy)


def _sealed_lines_other(after: int = 0) -> Iterator[bytes]:
    """The same lines, written from Python values (the SQLite demo)."""
    columns = ("sequence", *chain.CONTENT_COLUMNS, "prev_hash", "hash")
    for row in (
        AuditEvent.objects.filter(sequence__gt=after).order_by("sequence").values_list(*columns).iterator(2000)
    ):
        values = dict(zip(columns, row))
        yield chain.walk_line(
            sequence=values.pop("sequence"),
            prev_hash=values.pop("prev_hash"),
            hash=values.pop("hash"),
            content=chain.content_text(**values),
        )


def _stretch_walk(
    params: dict, snapshot: str, first: int, last: int, checkpoints: dict, previous: str | None
) -> chain.WalkResult:
    """Walk sequences first..last on a connection of its own, in the coordinator's snapshot (run in a
    forked process: it touches nothing it inherited, only the connection it opens). `previous` is the hash
    the first event must link to (the first stretch's: genesis or the archive floor's), or None for the
    others, whose first link the join checks."""
    import psycopg
    from psycopg import IsolationLevel, sql

    raw = psycopg.connect(**params)
    try:
        raw.isolation_level = IsolationLevel.REPEATABLE_READ
        raw.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        raw.execute("SET LOCAL TimeZone = 'UTC'")
        raw.execute("SET LOCAL DateStyle = 'ISO, MDY'")
        with raw.cursor() as cursor, cursor.copy(
            f"COPY (SELECT {WALK_COLUMNS} FROM audit_auditevent WHERE sequence BETWEEN {int(first)} AND {int(last)}"
            " ORDER BY sequence) TO STDOUT"
        ) as copy:
            return chain.chain_walk(
                _copy_lines(copy),
                checkpoints=checkpoints,
                first_sequence=first,
                previous=previous,
                final=False,
            )
    finally:
        raw.close()  # also ends a COPY left streaming by a break; this read-only transaction has nothing to keep


@dataclass(frozen=True)
class _CheckpointRef:
    id: int | None
    head_hash: str


def _parallel_walk(checkpoints: dict, workers: int, *, after: int, previous: str) -> chain.WalkResult | None:
    """Walk the chain in `workers` stretches at once, each in a process of its own (PostgreSQL writing the
    rows and Python hashing them both cost CPU, and one process would use one core); None when one stream
    would do: a short chain, or events not committed yet (inside a test's transaction), which other
    connections cannot see."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import psycopg
    from psycopg import IsolationLevel

    if workers < 2 or connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    params = {
        key: value
        for key, value in connection.get_connection_params().items()
        if key not in ("context", "cursor_factory", "prepare_threshold")
    }
    with psycopg.connect(**params) as coordinator:
        coordinator.isolation_level = IsolationLevel.REPEATABLE_READ
        snapshot = coordinator.execute("SELECT pg_export_snapshot()").fetchone()[0]
        head = coordinator.execute("SELECT max(sequence) FROM audit_auditevent").fetchone()[0] or 0
        if head - after < PARALLEL_MIN_EVENTS:
            return None
        bounds = [after + 1 + (head - after) * k // workers for k in range(workers)] + [head + 1]
        stretches = [(bounds[k], bounds[k + 1] - 1) for k in range(workers)]
        light = {sequence: [_CheckpointRef(c.id, c.head_hash) for c in found] for sequence, found in checkpoints.items()}
        connection.close()  # forked children must not inherit an open connection of Django's
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [
                pool.submit(_stretch_walk, params, snapshot, first, last, light, previous if k == 0 else None)
                for k, (first, last) in enumerate(stretches)
            ]
            results = [future.result() for future in futures]
    return _stretches_join(stretches, results, checkpoints, previous=previous)


def _stretches_join(stretches, results, checkpoints, *, previous: str = chain.GENESIS) -> chain.WalkResult:
    """One result for the whole chain: each stretch must start where the one before it ended, link to its
    last hash, and run to its own end; the first break in chain order wins. `previous`: what the first
    stretch links to."""
    total = chain.WalkResult(last_sequence=stretches[0][0] - 1 if stretches else 0, last_hash=previous)
    for (first, last), result in zip(stretches, results):
        total.checkpoints_checked += result.checkpoints_checked
        starts_missing = result.first_break is not None and (result.first_break.sequence, result.first_break.reason) == (
            first, chain.MISSING
        )
        if not starts_missing and result.first_prev_hash and result.first_prev_hash != previous:
            total.first_break = chain.Break(first, chain.LINK_MISMATCH)
        elif result.first_break is not None:
            total.first_break = result.first_break
        elif result.last_sequence != last:
            total.first_break = chain.Break(result.last_sequence + 1, chain.MISSING)
        total.events += result.events
        if total.first_break is not None:
            total.last_sequence = min(result.last_sequence, total.first_break.sequence - 1)
            break
        total.last_sequence, total.last_hash = result.last_sequence, result.last_hash
        previous = result.last_hash
    if total.first_break is None:
        chain.chain_end_check(total, checkpoints)
    total.last_hash = total.last_hash if total.first_break is None else ""
    return total


def _archive_floor(floors: list):
    """The archive floor a walk starts after: the newest signed one, once the chain's first event is gone
    (archived, docs/retention.md); None while the chain still starts at sequence 1, which is then walked
    whole (floors are checked there like any checkpoint)."""
    if not floors or AuditEvent.objects.filter(sequence=1).exists():
        return None
    return max(floors, key=lambda floor: floor.sequence)


def audit_chain_walk(*, extra_checkpoints: list | None = None, workers: int = VERIFY_WORKERS) -> chain.WalkResult:
    """Walk the whole sealed chain, oldest first, and check every link, every hash and every signed
    checkpoint (those in the table, plus copies kept elsewhere: `extra_checkpoints`). Stops at the first break.

    It recomputes each hash in this process from the stored values as the database writes them out: the
    database is what is being checked, so it is not asked to compute any hash. A long chain on PostgreSQL is
    walked in `workers` stretches at once (one snapshot, one connection each).

    Where the oldest events were archived and removed, the walk starts after the newest signed archive floor
    and links its first event to the floor's hash; without a valid floor a missing prefix is a break like any
    other (R-SEC-INTEGRITY)."""
    known = list(AuditCheckpoint.objects.order_by("id")) + list(extra_checkpoints or [])
    by_sequence: dict[int, list] = {}
    floors = []
    forged = None
    for checkpoint in known:
        if not checkpoints.checkpoint_signature_valid(checkpoint):
            if forged is None or checkpoint.sequence < forged.sequence:
                forged = checkpoint
            continue
        by_sequence.setdefault(checkpoint.sequence, []).append(checkpoint)
        if getattr(checkpoint, "kind", checkpoints.HEAD) == checkpoints.ARCHIVE_FLOOR:
            floors.append(checkpoint)
    floor = _archive_floor(floors)
    after, previous = (floor.sequence, floor.head_hash) if floor is not None else (0, chain.GENESIS)
    in_walk = {sequence: found for sequence, found in by_sequence.items() if sequence > after}
    result = _parallel_walk(in_walk, workers, after=after, previous=previous)
    if result is None:
        with transaction.atomic():
            lines = _sealed_lines_postgresql(after) if connection.vendor == "postgresql" else _sealed_lines_other(after)
            try:
                result = chain.chain_walk(lines, checkpoints=in_walk, first_sequence=after + 1, previous=previous)
            finally:
                # Stopped at a break, the COPY may still be streaming: closing the generator cancels it, which
                # leaves this (read-only) transaction aborted, so it is rolled back rather than committed.
                lines.close()
                transaction.set_rollback(True)
    result.checkpoints = known
    result.archive_floor = floor
    if forged is not None and (result.first_break is None or forged.sequence <= result.first_break.sequence):
        result.first_break = chain.Break(forged.sequence, chain.CHECKPOINT_FORGED, checkpoint_id=forged.id)
    return result
