"""The live-count index (ADR 0022): what a segment's live counts read, kept in the web process's memory as columns,
so that the builder's counts over a million patients answer in tens of milliseconds (PostgreSQL's one statement
over the standing, consent.selectors.standing, takes seconds at that size on a small server).

Counts only: a marketer's estimate. Nothing here decides a send: the launch classifies with THE predicate's own
statement and the sender checks again under lock (DESIGN.md 3). Tests hold this index's counts equal to the SQL
statement's on every rule tree they generate (campaigns/tests/test_count_index.py).

What it holds, one row per patient: birth year, sex, state, postal code, last visit, the patient's count of
authorized purposes, the suppression of their address; per condition and program code, the rows holding it; per
purpose, each authorization's standing (signed, expiry, expiry event, the clock-free end). No name, no address,
no identifier: nothing here is shown to anyone, and a patient is known by the database's row id only.

Fresh for every answer: before counting, the index reads PostgreSQL's change log (consent_countchange, written by
triggers in each writing transaction: migration consent 0011) for everything at or after the oldest transaction
that was still running at its last read, and loads those patients again, all in one REPEATABLE READ snapshot. So
an answer reflects every transaction committed before it started, in whatever order they committed. Time is the
database's: an authorization that expired a second ago is counted expired, as the SQL statement would.

Loaded in the background: the first request of a process starts the load (about half a minute at a million
patients) and is answered by the SQL statement, as is every request until the load is done or if it failed.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import date

import numpy as np
from django.conf import settings
from django.db import connection

from consent.models import Suppression
from consent.selectors.coverage import _ALL_GAPS, _MARK_RANK, COVERED, PERMANENT_ENDS, CoverageGap

logger = logging.getLogger(__name__)

_NO_MARK = len(_MARK_RANK)
_REASONS = [COVERED, *_ALL_GAPS]
_REASON_CODE = {reason: code for code, reason in enumerate(_REASONS)}
_NEVER = np.iinfo(np.int64).max  # no expiry, no expiry event
_UNKNOWN_DAY = np.iinfo(np.int32).min  # no last visit
# A change touching more patients than this is applied by loading everything again.
_PARTIAL_LIMIT = 50_000
# The change log keeps a day (consent.services.count_changes.count_changes_prune); an index that has not read it
# for half of that loads everything again rather than trust a log that may have been pruned under it.
_STALE_SECONDS = 12 * 3600

_PATIENT_COLUMNS = (
    # (name, SQL giving a non-null 32-bit integer)
    ("id", "p.id::int4"),
    ("birth_year", "COALESCE(p.birth_year, -1)::int4"),
    ("sex", "ascii(p.sex)::int4"),  # ascii('') is 0: unknown
    ("state", "(ascii(substr(p.state, 1, 1)) * 256 + ascii(substr(p.state, 2, 1)))::int4"),
    ("postal", "(pc.ord - 1)::int4"),  # the position in the index's list of postal codes (0: blank)
    ("last_visit", f"COALESCE(p.last_visit - DATE '1970-01-01', {_UNKNOWN_DAY})::int4"),
    ("purposes", "p.authorized_purposes::int4"),
    # 0: not suppressed, 1: a hard bounce, 2: another suppression (the order of the SQL statement's CASE).
    ("suppressed", "(CASE WHEN s.reason IS NULL THEN 0 WHEN s.reason = %s THEN 1 ELSE 2 END)::int4"),
)


def _state_code(state: str) -> int:
    return ord(state[0]) * 256 + ord(state[1]) if len(state) == 2 else 0


_EPOCH_DATE = date(1970, 1, 1)


def _epoch_day(value: date) -> int:
    return (value - _EPOCH_DATE).days


def _copy_rows(cursor, query: str, params: list, fields: list[tuple[str, str]]) -> np.ndarray:
    """COPY (query) TO STDOUT in binary, every column a non-null integer of the width `fields` gives ('i4', 'i8'):
    fixed-width rows that numpy reads in place of a Python loop over millions of tuples."""
    buffer = bytearray()
    with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)", params) as copy:
        for data in copy:
            buffer += data
    dtype = [("count", ">i2")]
    for name, kind in fields:
        dtype += [(f"{name}_length", ">i4"), (name, f">{kind}")]
    dtype = np.dtype(dtype)
    header = 19  # signature (11), flags (4), extension length (4, zero)
    body = len(buffer) - header - 2  # the trailer: -1 as a 16-bit field count
    if body < 0 or body % dtype.itemsize:
        raise ValueError("unexpected COPY BINARY layout")
    rows = np.frombuffer(bytes(buffer), dtype=dtype, offset=header, count=body // dtype.itemsize)
    return rows


class CountIndexUnavailable(Exception):
    """The index cannot answer now (not loaded, or a refresh failed): count with SQL."""


@dataclass
class _Standing:
    """One purpose's authorizations: the row of the patient holding each, and its standing."""

    row: np.ndarray  # int32
    signed: np.ndarray  # int64 microseconds since the epoch
    expires: np.ndarray  # int64, _NEVER when it has no expiry date
    event: np.ndarray  # int64, _NEVER when no expiry event is recorded
    ended: np.ndarray  # int8: the rank in _MARK_RANK of its clock-free end, _NO_MARK when none

    @classmethod
    def empty(cls) -> _Standing:
        return cls(*(np.empty(0, dtype) for dtype in (np.int32, np.int64, np.int64, np.int64, np.int8)))

    def without(self, rows: np.ndarray) -> _Standing:
        keep = ~np.isin(self.row, rows)
        return _Standing(self.row[keep], self.signed[keep], self.expires[keep], self.event[keep], self.ended[keep])

    def plus(self, other: _Standing) -> _Standing:
        return _Standing(*(np.concatenate((a, b)) for a, b in zip(self.parts(), other.parts())))

    def parts(self):
        return (self.row, self.signed, self.expires, self.event, self.ended)


class CountIndex:
    """The counting inputs of every patient, and `counts(rules, purpose_id)`. Thread-safe; one per process."""

    def __init__(self, connect=None):
        self._connect = connect or _connect
        self._lock = threading.Lock()
        self._connection = None
        self.loaded = False
        self.loading = False
        self.failed_at = -float("inf")  # time.monotonic() of the last failure
        self.load_seconds = None
        self.patients = 0

    # -- loading ----------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Load everything, in one snapshot."""
        with self._lock:
            started = time.perf_counter()
            with self._snapshot() as cursor:
                self._load_all(cursor)
            self.loaded = True
            self.load_seconds = time.perf_counter() - started
            logger.info("count index loaded: %d patients in %.1f s", self.patients, self.load_seconds)

    def load_in_background(self) -> None:
        try:
            self.load()
        except Exception:
            self._failed()
            logger.exception("count index failed to load; live counts use SQL")
        finally:
            self.loading = False

    def _failed(self) -> None:
        """Nothing in memory is trusted after a failure: SQL answers until a new load is done."""
        self.loaded = False
        self.failed_at = time.monotonic()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _db(self):
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        return self._connection

    @contextlib.contextmanager
    def _snapshot(self):
        """A REPEATABLE READ, READ ONLY transaction on the index's own connection; sets the snapshot's oldest
        running transaction (`_snapshot_xmin`) and the database's time (`_now`, microseconds) for what it reads."""
        db = self._db()
        with db.transaction(), db.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, "
                "(extract(epoch FROM statement_timestamp()) * 1000000)::int8"
            )
            self._snapshot_xmin, self._now = cursor.fetchone()
            yield cursor

    def _load_all(self, cursor) -> None:
        self._postal_values = [""]
        self._postal_position = {"": 0}
        self._row_of = np.full(0, -1, np.int32)
        self._columns = {name: np.empty(0, np.int32) for name, _ in _PATIENT_COLUMNS}
        self._alive = np.empty(0, bool)
        self._conditions: dict[str, np.ndarray] = {}
        self._programs: dict[str, np.ndarray] = {}
        self._standing: dict[int, _Standing] = {}
        self._apply(cursor, patient_ids=None)
        self._watermark = self._snapshot_xmin
        self._read_at = time.monotonic()

    def _apply(self, cursor, *, patient_ids: np.ndarray | None) -> None:
        """Load the given patients again (all of them when None): their columns, codes and standings."""
        only = "" if patient_ids is None else " AND {column} = ANY(%s)"
        ids_param = [] if patient_ids is None else [patient_ids.astype(np.int64).tolist()]

        # Postal codes, conditions and programs are text: each distinct value gets a number (a position in a list
        # this index keeps), so that the rows can come back as fixed-width integers.
        cursor.execute(
            "SELECT DISTINCT postal_code FROM consent_patient p WHERE true" + only.format(column="p.id"), ids_param
        )
        for (value,) in cursor.fetchall():
            if value not in self._postal_position:
                self._postal_position[value] = len(self._postal_values)
                self._postal_values.append(value)
        select = ", ".join(sql for _, sql in _PATIENT_COLUMNS)
        rows = _copy_rows(
            cursor,
            f"SELECT {select} FROM consent_patient p "
            "JOIN unnest(%s::text[]) WITH ORDINALITY AS pc(code, ord) ON pc.code = p.postal_code "
            "LEFT JOIN consent_suppression s ON s.email_digest = p.email_digest "
            "WHERE true" + only.format(column="p.id"),
            [Suppression.Reason.HARD_BOUNCE, self._postal_values, *ids_param],  # in the order of their %s
            [(name, "i4") for name, _ in _PATIENT_COLUMNS],
        )
        self._patients_put(rows, patient_ids)
        changed_rows = None if patient_ids is None else self._rows_for(patient_ids)

        for table, store in (("consent_patientcondition", self._conditions), ("consent_programenrolment", self._programs)):
            cursor.execute(f"SELECT DISTINCT code FROM {table} WHERE true" + only.format(column="patient_id"), ids_param)
            codes = sorted(code for (code,) in cursor.fetchall())
            fresh = _copy_rows(
                cursor,
                f"SELECT c.ord::int4, t.patient_id::int4 FROM {table} t "
                "JOIN unnest(%s::text[]) WITH ORDINALITY AS c(code, ord) ON c.code = t.code "
                "WHERE true" + only.format(column="t.patient_id"),
                [codes or [""], *ids_param],
                [("code", "i4"), ("patient", "i4")],
            )
            self._codes_put(store, codes, fresh, changed_rows)

        ranks = {reason: position for position, reason in enumerate(_MARK_RANK)}
        ended = " ".join(f"WHEN '{end}' THEN {ranks[end]}" for end in PERMANENT_ENDS)
        fresh = _copy_rows(
            cursor,
            "SELECT purpose_id::int4, patient_id::int4, "
            "(extract(epoch FROM signed_at) * 1000000)::int8, "
            f"COALESCE((extract(epoch FROM expires_at) * 1000000)::int8, {_NEVER}), "
            f"COALESCE((extract(epoch FROM expiry_event_at) * 1000000)::int8, {_NEVER}), "
            f"(CASE ended_by {ended} ELSE {_NO_MARK} END)::int4 "
            "FROM consent_authorizationstanding WHERE true" + only.format(column="patient_id"),
            ids_param,
            [("purpose", "i4"), ("patient", "i4"), ("signed", "i8"), ("expires", "i8"), ("event", "i8"), ("ended", "i4")],
        )
        if changed_rows is not None:
            self._standing = {purpose: standing.without(changed_rows) for purpose, standing in self._standing.items()}
        fresh_rows = self._row_of[fresh["patient"].astype(np.int64)]
        for purpose in np.unique(fresh["purpose"]).tolist():
            mine = fresh["purpose"] == purpose
            added = _Standing(
                fresh_rows[mine].astype(np.int32),
                fresh["signed"][mine].astype(np.int64),
                fresh["expires"][mine].astype(np.int64),
                fresh["event"][mine].astype(np.int64),
                fresh["ended"][mine].astype(np.int8),
            )
            self._standing[purpose] = self._standing.get(purpose, _Standing.empty()).plus(added)

    def _rows_for(self, patient_ids: np.ndarray) -> np.ndarray:
        ids = patient_ids.astype(np.int64)
        ids = ids[ids < len(self._row_of)]
        rows = self._row_of[ids]
        return rows[rows >= 0]

    def _patients_put(self, rows: np.ndarray, patient_ids: np.ndarray | None) -> None:
        ids = rows["id"].astype(np.int64)
        top = int(max(ids.max(initial=0), 0 if patient_ids is None else patient_ids.max(initial=0)))
        if top >= len(self._row_of):
            grown = np.full(max(top + 1, int(len(self._row_of) * 1.25) + 1024), -1, np.int32)
            grown[: len(self._row_of)] = self._row_of
            self._row_of = grown
        if patient_ids is not None:  # gone unless returned again
            self._alive[self._rows_for(patient_ids)] = False
        known = self._row_of[ids]
        new = known < 0
        if new.any():
            first = len(self._alive)
            count = int(new.sum())
            self._row_of[ids[new]] = np.arange(first, first + count, dtype=np.int32)
            for name in self._columns:
                self._columns[name] = np.concatenate((self._columns[name], np.zeros(count, np.int32)))
            self._alive = np.concatenate((self._alive, np.zeros(count, bool)))
        at = self._row_of[ids]
        for name in self._columns:
            self._columns[name][at] = rows[name]
        self._alive[at] = True
        self.patients = int(self._alive.sum())

    def _codes_put(self, store: dict, codes: list[str], fresh: np.ndarray, changed_rows) -> None:
        if changed_rows is not None:
            for code in list(store):
                store[code] = store[code][~np.isin(store[code], changed_rows)]
        rows = self._row_of[fresh["patient"].astype(np.int64)]
        positions = fresh["code"].astype(np.int64) - 1
        order = np.argsort(positions, kind="stable")
        positions, rows = positions[order], rows[order]
        bounds = np.searchsorted(positions, np.arange(len(codes) + 1))
        for number, code in enumerate(codes):
            added = rows[bounds[number] : bounds[number + 1]]
            store[code] = np.union1d(store.get(code, np.empty(0, np.int32)), added).astype(np.int32)

    # -- reading the change log ---------------------------------------------------------------------------------

    def _refresh(self, cursor) -> None:
        """Apply what changed since the last read (called in the snapshot that then answers)."""
        if time.monotonic() - self._read_at > _STALE_SECONDS:
            self._load_all(cursor)
            return
        cursor.execute(
            "SELECT DISTINCT patient_id, email_digest FROM consent_countchange WHERE xid >= %s::text::xid8",
            [str(self._watermark)],
        )
        changes = cursor.fetchall()
        patient_ids = {patient for patient, _ in changes if patient is not None}
        digests = [digest for patient, digest in changes if patient is None and digest is not None]
        everything = any(patient is None and digest is None for patient, digest in changes)
        if digests and not everything:
            cursor.execute("SELECT id FROM consent_patient WHERE email_digest = ANY(%s)", [digests])
            patient_ids.update(patient for (patient,) in cursor.fetchall())
        if everything or len(patient_ids) > _PARTIAL_LIMIT:
            self._load_all(cursor)
            return
        if patient_ids:
            self._apply(cursor, patient_ids=np.array(sorted(patient_ids), dtype=np.int64))
        self._watermark = self._snapshot_xmin
        self._read_at = time.monotonic()

    # -- counting ---------------------------------------------------------------------------------------------

    def counts(self, *, rules, purpose_id: int, year: int) -> dict[str, int]:
        """The same dictionary as consent.selectors.standing.coverage_standing_counts for the segment `rules`
        (None: every patient) and the purpose, now. `year`: the year ages are counted from."""
        with self._lock:
            if not self.loaded:
                raise CountIndexUnavailable("the count index is not loaded")
            try:
                with self._snapshot() as cursor:
                    self._refresh(cursor)
            except Exception as error:
                self._failed()
                raise CountIndexUnavailable("the count index could not read the change log") from error
            mask = self._alive.copy() if rules is None else (self._select(rules, year) & self._alive)
            reason = self._reasons(purpose_id)
            totals = np.bincount(reason[mask], minlength=len(_REASONS))
        return {name: int(totals[code]) for code, name in enumerate(_REASONS)}

    def _reasons(self, purpose_id: int) -> np.ndarray:
        """Each patient's reason code for the purpose now, as the SQL statement's CASE gives it."""
        n = len(self._alive)
        standing = self._standing.get(purpose_id, _Standing.empty())
        now = self._now
        live = (standing.ended == _NO_MARK) & (standing.signed <= now) & (standing.expires > now) & (standing.event > now)
        covered = np.zeros(n, bool)
        covered[standing.row[live]] = True
        rank = {reason: position for position, reason in enumerate(_MARK_RANK)}
        each = np.minimum(
            standing.ended,
            np.minimum(
                np.where(standing.event <= now, rank[CoverageGap.EXPIRY_EVENT], _NO_MARK),
                np.where(standing.expires <= now, rank[CoverageGap.EXPIRED], _NO_MARK),
            ),
        ).astype(np.int8)
        mark = np.full(n, _NO_MARK, np.int8)
        np.minimum.at(mark, standing.row, each)
        holds = np.zeros(n, bool)
        holds[standing.row] = True
        suppressed = self._columns["suppressed"]
        purposes = self._columns["purposes"]
        mark_reason = np.array([_REASON_CODE[reason] for reason in _MARK_RANK] + [0], np.int64)
        return np.select(
            [
                covered & (suppressed == 0),
                covered & (suppressed == 1),
                covered,
                mark < _NO_MARK,
                purposes > holds.astype(np.int32),
            ],
            [
                _REASON_CODE[COVERED],
                _REASON_CODE[CoverageGap.BOUNCED],
                _REASON_CODE[CoverageGap.SUPPRESSED],
                mark_reason[mark],
                _REASON_CODE[CoverageGap.WRONG_PURPOSE],
            ],
            default=_REASON_CODE[CoverageGap.NO_AUTHORIZATION],
        )

    def _select(self, node: dict, year: int) -> np.ndarray:
        """The rows a rule tree selects, with campaigns.segments' semantics: an unknown attribute matches no
        leaf on it, and so matches the leaf's negation."""
        if "op" in node:
            masks = [self._select(child, year) for child in node["rules"]]
            combined = masks[0]
            for mask in masks[1:]:
                combined = (combined & mask) if node["op"] == "and" else (combined | mask)
            return combined
        if "not" in node:
            return ~self._select(node["not"], year)
        column = self._columns
        field = node["field"]
        n = len(self._alive)
        if field == "age":
            born = column["birth_year"]
            mask = born >= 0
            if node.get("min") is not None:
                mask &= born <= year - node["min"]
            if node.get("max") is not None:
                mask &= born >= year - node["max"]
            if node.get("min") is None and node.get("max") is None:
                return np.ones(n, bool)  # no bound: every patient, as an empty Q()
            return mask
        if field == "sex":
            return np.isin(column["sex"], [ord(value) for value in node["in"] if len(value) == 1])
        if field == "state":
            return np.isin(column["state"], [_state_code(value) for value in node["in"]])
        if field == "postal_code":
            if "prefix" in node:
                wanted = [i for i, value in enumerate(self._postal_values) if i and value.startswith(node["prefix"])]
            else:
                wanted = [self._postal_position[value] for value in node["in"] if value in self._postal_position]
            return np.isin(column["postal"], [i for i in wanted if i])
        if field == "last_visit":
            day = column["last_visit"]
            mask = day != _UNKNOWN_DAY
            if "after" in node:
                mask &= day >= _epoch_day(date.fromisoformat(node["after"]))
            if "before" in node:
                mask &= day < _epoch_day(date.fromisoformat(node["before"]))
            return mask
        if field in ("condition", "program"):
            store = self._conditions if field == "condition" else self._programs
            if field == "condition":
                codes = [code for code in store if any(code.startswith(prefix) for prefix in node["any"])]
            else:
                codes = [code for code in node["any"] if code in store]
            mask = np.zeros(n, bool)
            for code in codes:
                mask[store[code]] = True
            return mask
        raise ValueError(f"unknown field {field!r}")


def _connect():
    """A connection of the index's own, to the default database: it reads committed data only, never a
    request's transaction (which may still roll back)."""
    import psycopg

    params = connection.get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(django_only, None)
    return psycopg.connect(**params, autocommit=False)


_RETRY_SECONDS = 60  # after a failed load or refresh, how long the process counts with SQL before loading again

_index: CountIndex | None = None
_index_pid: int | None = None
_start_lock = threading.Lock()


def count_index_ready() -> CountIndex | None:
    """This process's index when it is loaded; otherwise None (the caller counts with SQL), and the call starts
    the load in the background if none is running (again a minute after a failure). None, and no load, when
    HIPAAMAIL_COUNT_INDEX is off or the database is not PostgreSQL."""
    global _index, _index_pid
    if not settings.HIPAAMAIL_COUNT_INDEX or connection.vendor != "postgresql":
        return None
    with _start_lock:
        if _index_pid != os.getpid():  # a forked worker: an index of its own
            _index, _index_pid = CountIndex(), os.getpid()
        index = _index
        if not index.loaded and not index.loading and time.monotonic() - index.failed_at > _RETRY_SECONDS:
            index.loading = True
            threading.Thread(target=index.load_in_background, name="count-index", daemon=True).start()
    return index if index.loaded else None
