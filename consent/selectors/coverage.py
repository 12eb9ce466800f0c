"""THE predicate (DESIGN.md, ADR 0001): whether a stored, signed, unexpired, unrevoked authorization covers a patient
for a purpose at an instant (and for how long), its lock for the sender, and the reasons a patient is not covered.
No other code filters authorizations for that question."""
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import (
    DateTimeField,
    Exists,
    Expression,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Now

from consent.models import Authorization, AuthorizationDefect, ExpiryEvent, Patient, Revocation, Suppression


class CoverageGap:
    """Why a patient is not covered for a purpose; the values double as delivery block reasons. Each
    ground of 164.508(b)(2) is a reason of its own (R-AUTH-DEFECTIVE)."""

    NO_AUTHORIZATION = "no_authorization"
    WRONG_PURPOSE = "wrong_purpose"
    EXPIRED = "expired"
    EXPIRY_EVENT = "expiry_event"
    REVOKED = "revoked"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"
    DEFECT_MISSING_ELEMENT = AuthorizationDefect.Reason.MISSING_ELEMENT.value
    DEFECT_COMPOUND = AuthorizationDefect.Reason.COMPOUND.value
    DEFECT_CONDITIONED = AuthorizationDefect.Reason.CONDITIONED.value
    DEFECT_FALSE_INFORMATION = AuthorizationDefect.Reason.FALSE_INFORMATION.value


def _window_end(at: datetime | Expression, lasting: timedelta | None) -> datetime | Expression:
    """The instant time-based ends are compared with: `at`, or `at + lasting` for a coverage that must hold
    through a whole check-to-send window (ADR 0010)."""
    if not lasting:
        return at
    if isinstance(at, datetime):
        return at + lasting
    return ExpressionWrapper(at + Value(lasting), output_field=DateTimeField())


def authorization_covering_list(
    *,
    purpose_id: int,
    patient_ids: Iterable[int] | None = None,
    at: datetime | Expression | None = None,
    lasting: timedelta | None = None,
) -> QuerySet[Authorization]:
    """Authorizations that cover their patient for `purpose_id` at `at`, by default the database's now().

    Covered means: for exactly this purpose, signed at or before `at`, its expiry date (if it has one)
    strictly after `at`, its expiry event (if one was recorded) not yet occurred at `at`, no revocation and
    no recorded defect. Revocations and defects take effect when they commit, so no time is compared for
    them.
    `lasting`: the coverage must hold from `at` through `at + lasting` — the sender's check-to-send window
    (ADR 0010). The time-based ends (expiry date, expiry event) are compared with the window's end, so an
    authorization that expires while the window is open is not used; revocations and defects are kept out by
    the row locks the sender holds for the window.
    Django's Now() is STATEMENT_TIMESTAMP() on PostgreSQL: the instant of this very query, not of the
    transaction's start, which matters when the query runs after waiting for a lock.
    """
    at = Now() if at is None else at
    ends = _window_end(at, lasting)
    this = OuterRef("pk")
    covering = Authorization.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=ends),
        ~Exists(Revocation.objects.filter(authorization=this)),
        ~Exists(ExpiryEvent.objects.filter(authorization=this, occurred_at__lte=ends)),
        ~Exists(AuthorizationDefect.objects.filter(authorization=this)),
        purpose_id=purpose_id,
        signed_at__lte=at,
    )
    if patient_ids is not None:
        covering = covering.filter(patient_id__in=list(patient_ids))
    return covering


@dataclass(frozen=True)
class LockedCoverage:
    """What `authorization_lock_covering` decided, and when.

    `by_patient`: {patient_id: covering authorization's id}. `checked_at`: the database's clock at the check
    (the check statement's own timestamp). `started` and `returned`: this process's time.monotonic() just
    before that statement was sent and just after its rows came back, which bracket the check, so the caller
    bounds the time elapsed since it without comparing clocks across hosts:
    time.monotonic() - returned <= real time since the check <= time.monotonic() - started."""

    by_patient: dict[int, int]
    checked_at: datetime | None
    started: float
    returned: float


def authorization_lock_covering(
    *, purpose_id: int, patient_ids: Iterable[int], lasting: timedelta | None = None
) -> LockedCoverage:
    """Lock the authorizations that cover these patients, then decide coverage again after the lock.

    Must run inside the transaction that sends. The rows are locked FOR SHARE in primary-key order, so
    concurrent senders do not block each other while a revocation (which locks FOR UPDATE) waits for the
    sending transaction to commit; a revocation that committed before the lock is seen by the re-check,
    which is a new statement with a new snapshot. `lasting`: the window the coverage must hold through
    (authorization_covering_list). Ids only, so the sender's hot path never loads (nor decrypts) an
    authorization's evidence.
    """
    patient_ids = list(patient_ids)
    candidate_ids = list(
        authorization_covering_list(purpose_id=purpose_id, patient_ids=patient_ids, lasting=lasting)
        .order_by("id")
        .values_list("id", flat=True)
    )
    if not candidate_ids:
        now = time.monotonic()
        return LockedCoverage(by_patient={}, checked_at=None, started=now, returned=now)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM consent_authorization WHERE id = ANY(%s) ORDER BY id FOR SHARE", [candidate_ids]
            )
    else:
        # SQLite ignores row locks; the IMMEDIATE transaction already holds the database's write lock.
        list(Authorization.objects.select_for_update().filter(id__in=candidate_ids).order_by("id"))
    covered = authorization_covering_list(purpose_id=purpose_id, patient_ids=patient_ids, lasting=lasting).filter(
        id__in=candidate_ids
    )
    started = time.monotonic()
    # With several covering authorizations, the most recent is the evidence recorded. The check's instant comes
    # with its rows: Now() is this statement's own timestamp, the `at` of the predicate above.
    rows = list(covered.annotate(checked_at=Now()).order_by("id").values_list("patient_id", "id", "checked_at"))
    returned = time.monotonic()
    checked_at = rows[0][2] if rows else None
    return LockedCoverage(
        by_patient={patient_id: pk for patient_id, pk, _ in rows},
        checked_at=checked_at,
        started=started,
        returned=returned,
    )


def authorization_gap_list(
    *, purpose_id: int, patient_ids: Iterable[int], lasting: timedelta | None = None
) -> dict[int, str]:
    """For patients the predicate does not cover now (through `now + lasting`, when given), why not
    (R-SEND-EVIDENCE).

    Evidence for a blocked delivery, not a decision: the decision is the predicate's. When a patient has
    several authorizations for the purpose, the strongest reason is reported: the patient's own revocation
    first, then a defect, then an expiry event, then an expiry date.
    """
    patient_ids = set(patient_ids)
    covered = set(
        authorization_covering_list(purpose_id=purpose_id, patient_ids=patient_ids, lasting=lasting).values_list(
            "patient_id", flat=True
        )
    )
    uncovered = patient_ids - covered
    if not uncovered:
        return {}
    now = _window_end(Now(), lasting)
    this = OuterRef("pk")
    rows = (
        Authorization.objects.filter(patient_id__in=uncovered)
        .annotate(
            is_revoked=Exists(Revocation.objects.filter(authorization=this)),
            is_event=Exists(ExpiryEvent.objects.filter(authorization=this, occurred_at__lte=now)),
            is_expired=Q(expires_at__lte=now),
        )
        .values_list("id", "patient_id", "purpose_id", "is_revoked", "is_event", "is_expired")
    )
    # Every defect of each authorization: one may have several, and the strongest is reported.
    defects: dict[int, set[str]] = {}
    for authorization_id, reason in AuthorizationDefect.objects.filter(
        authorization__patient_id__in=uncovered, authorization__purpose_id=purpose_id
    ).values_list("authorization_id", "reason"):
        defects.setdefault(authorization_id, set()).add(reason)
    rank = [
        CoverageGap.REVOKED,
        *sorted(AuthorizationDefect.Reason.values),
        CoverageGap.EXPIRY_EVENT,
        CoverageGap.EXPIRED,
    ]
    marks: dict[int, set[str]] = {}
    other_purpose: set[int] = set()
    for authorization_id, patient_id, row_purpose_id, is_revoked, is_event, is_expired in rows:
        if row_purpose_id != purpose_id:
            other_purpose.add(patient_id)
            continue
        found = marks.setdefault(patient_id, set())
        if is_revoked:
            found.add(CoverageGap.REVOKED)
        found |= defects.get(authorization_id, set())
        if is_event:
            found.add(CoverageGap.EXPIRY_EVENT)
        if is_expired:
            found.add(CoverageGap.EXPIRED)
    gaps = {}
    for patient_id in uncovered:
        found = marks.get(patient_id, set())
        strongest = next((reason for reason in rank if reason in found), None)
        if strongest:
            gaps[patient_id] = strongest
        elif patient_id in other_purpose:
            gaps[patient_id] = CoverageGap.WRONG_PURPOSE
        else:
            gaps[patient_id] = CoverageGap.NO_AUTHORIZATION
    return gaps


def patient_suppression_list(*, patient_ids: Iterable[int]) -> dict[int, str]:
    """Patients whose address is suppressed (R-BOUNCE-SUPPRESS): {patient_id: "bounced" | "suppressed"}.
    Not a question of consent: an address that bounced or complained gets no marketing even when covered."""
    reasons = dict(
        Patient.objects.filter(pk__in=list(patient_ids))
        .filter(email_digest__in=Suppression.objects.values("email_digest"))
        .annotate(reason=Subquery(Suppression.objects.filter(email_digest=OuterRef("email_digest")).values("reason")))
        .values_list("id", "reason")
    )
    return {
        patient_id: CoverageGap.BOUNCED if reason == Suppression.Reason.HARD_BOUNCE else CoverageGap.SUPPRESSED
        for patient_id, reason in reasons.items()
    }


# The order authorization_gap_list reports a patient's reasons in, strongest first, after coverage itself.
_MARK_RANK = [CoverageGap.REVOKED, *sorted(AuthorizationDefect.Reason.values), CoverageGap.EXPIRY_EVENT, CoverageGap.EXPIRED]


COVERED = "covered"  # coverage_reason_sql's reason for a patient who would be sent to

# The ends that do not depend on the clock, strongest first: what an authorization's standing records (ADR 0021).
PERMANENT_ENDS = [CoverageGap.REVOKED, *sorted(AuthorizationDefect.Reason.values)]



def coverage_reason_sql(
    *, purpose_id: int, patients: QuerySet[Patient], patient_ids_between: tuple[int, int] | None = None
) -> tuple[str, list] | None:
    """ONE statement giving, for each of `patients` (any queryset of them: a segment, everyone), a row
    (patient_id, reason): COVERED when a message for the purpose would be sent to them now, else the reason it
    would be blocked — `authorization_gap_list` followed by `patient_suppression_list` for the covered (what
    campaigns.selectors.campaigns.delivery_block_reason_list asks patient by patient), without a patient's id
    leaving the database. None when the queryset cannot match anyone. For the live counts and the launch at the
    size of a health system (issue 15): a million patients are classified in the database, not carried through
    Python.

    Covered is THE predicate's answer: the covering authorizations are `authorization_covering_list`'s own query,
    embedded. The reasons for the others are ranked as `authorization_gap_list` ranks them (revoked, then each
    defect, then an expiry event, then an expiry date; then an authorization for another purpose only; then none);
    a covered patient whose address is suppressed is "bounced" (a hard bounce) or "suppressed". A test
    (consent/tests/selectors/test_coverage_counts.py) holds the two accounts equal on every case. Run it through
    `coverage_reason_execute` (PostgreSQL's planner settings for it).

    `patient_ids_between` (low, high]: every patient of `patients` has an id in it (a batch of the launch); the
    authorizations looked at are then that range's only, read by index range."""

    def sql(queryset: QuerySet) -> tuple[str, tuple]:
        return queryset.query.sql_with_params()

    try:
        patients_sql, patients_params = sql(patients.order_by().values("id", "email_digest"))
    except EmptyResultSet:  # a queryset that cannot match anyone (.none())
        return None
    within, ended_within = {}, {}
    if patient_ids_between is not None:
        low, high = patient_ids_between
        within = {"patient_id__gt": low, "patient_id__lte": high}
        ended_within = {"authorization__patient_id__gt": low, "authorization__patient_id__lte": high}
    covering_sql, covering_params = sql(
        authorization_covering_list(purpose_id=purpose_id).filter(**within).values(covered_patient=F("patient_id"))
    )
    # Patients with an authorization for the purpose that a mark applies to: each a set, asked once per statement.
    ended = {"authorization__purpose_id": purpose_id, **ended_within}
    marked = {
        CoverageGap.REVOKED: sql(Revocation.objects.filter(**ended).values(marked_patient=F("authorization__patient_id"))),
        **{
            reason: sql(AuthorizationDefect.objects.filter(**ended, reason=reason).values(marked_patient=F("authorization__patient_id")))
            for reason in sorted(AuthorizationDefect.Reason.values)
        },
        CoverageGap.EXPIRY_EVENT: sql(
            ExpiryEvent.objects.filter(**ended, occurred_at__lte=Now()).values(marked_patient=F("authorization__patient_id"))
        ),
        CoverageGap.EXPIRED: sql(
            Authorization.objects.filter(purpose_id=purpose_id, expires_at__lte=Now(), **within).values(
                marked_patient=F("patient_id")
            )
        ),
    }
    # Joins, not `m.id IN (subquery)` per patient: PostgreSQL hashes such a sub-plan only while it fits in work_mem,
    # and otherwise scans it once per patient (280,000 covering authorizations against a million patients: hours).
    # (Restricting the covering set and the marks to the segment's patients, to probe rather than hash for a small
    # segment, was measured and dropped: the planner then misjudges large segments, 2 to 4 times slower.) The marks are
    # few (about 7 % of a purpose's authorizations): one row per marked patient, its strongest mark by rank.
    marks_sql = " UNION ALL ".join(
        f"SELECT x.marked_patient AS patient_id, {rank} AS mark FROM ({mark_sql}) x"
        for rank, (mark_sql, _) in enumerate(marked[reason] for reason in _MARK_RANK)
    )
    marks_params = [param for reason in _MARK_RANK for param in marked[reason][1]]
    ranks = " ".join(f"WHEN {rank} THEN %s" for rank in range(len(_MARK_RANK)))
    statement = f"""
        SELECT m.id AS patient_id,
               CASE
                 WHEN cov.patient_id IS NOT NULL THEN
                   CASE WHEN s.reason IS NULL THEN %s WHEN s.reason = %s THEN %s ELSE %s END
                 WHEN mk.mark IS NOT NULL THEN CASE mk.mark {ranks} END
                 WHEN EXISTS (SELECT 1 FROM consent_authorization o WHERE o.patient_id = m.id AND o.purpose_id <> %s)
                   THEN %s
                 ELSE %s
               END AS reason
          FROM ({patients_sql}) m
          LEFT JOIN consent_suppression s ON s.email_digest = m.email_digest
          LEFT JOIN (SELECT DISTINCT c.covered_patient AS patient_id FROM ({covering_sql}) c) cov
                 ON cov.patient_id = m.id
          LEFT JOIN (SELECT k.patient_id, MIN(k.mark) AS mark FROM ({marks_sql}) k GROUP BY k.patient_id) mk
                 ON mk.patient_id = m.id
    """
    all_params = [
        COVERED,
        Suppression.Reason.HARD_BOUNCE,
        CoverageGap.BOUNCED,
        CoverageGap.SUPPRESSED,
        *_MARK_RANK,
        purpose_id,
        CoverageGap.WRONG_PURPOSE,
        CoverageGap.NO_AUTHORIZATION,
        *patients_params,
        *covering_params,
        *marks_params,
    ]
    return statement, all_params


def coverage_reason_execute(cursor, statement: str, params: list) -> None:
    """Execute a statement built on `coverage_reason_sql` (or the live counts' over the standing) inside the caller's
    transaction, with the planner settings they need on PostgreSQL."""
    if connection.vendor == "postgresql":
        # PostgreSQL's JIT compiler (on by default) judges these statements costly and spends seconds compiling
        # them (7.5 of 12 s at a million patients) to save milliseconds: off for this transaction only.
        cursor.execute("SET LOCAL jit = off")
        # The covering set of a large segment is hashed in memory rather than in 21 batches on disk.
        cursor.execute("SET LOCAL work_mem = '32MB'")
    cursor.execute(statement, params)


_ALL_GAPS = [
    CoverageGap.NO_AUTHORIZATION,
    CoverageGap.WRONG_PURPOSE,
    *_MARK_RANK,
    CoverageGap.BOUNCED,
    CoverageGap.SUPPRESSED,
]
