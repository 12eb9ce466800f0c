"""Reads about consent. `authorization_covering_list` is THE predicate of the product (DESIGN.md, R-SEND-COVERED):
no other code filters authorizations to decide whether a patient may be sent a message for a purpose.
"""
from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.db.models import Case, Expression, Q, QuerySet, Value, When
from django.db.models.functions import Now

from consent.models import Authorization


class CoverageGap:
    """Why a patient is not covered for a purpose; the values double as delivery block reasons."""

    NO_AUTHORIZATION = "no_authorization"
    WRONG_PURPOSE = "wrong_purpose"
    EXPIRED = "expired"
    REVOKED = "revoked"


def authorization_covering_list(
    *, purpose_id: int, patient_ids: Iterable[int] | None = None, at: datetime | Expression | None = None
) -> QuerySet[Authorization]:
    """Authorizations that cover their patient for `purpose_id` at `at`, by default the database's now().

    Covered means: for exactly this purpose, signed at or before `at`, expiring strictly after `at`, and with
    no revocation row. Revocations take effect when they commit, so no time comparison is made for them.
    Django's Now() is STATEMENT_TIMESTAMP() on PostgreSQL: the instant of this very query, not of the
    transaction's start, which matters when the query runs after waiting for a lock.
    """
    at = Now() if at is None else at
    covering = Authorization.objects.filter(
        purpose_id=purpose_id, signed_at__lte=at, expires_at__gt=at, revocation__isnull=True
    )
    if patient_ids is not None:
        covering = covering.filter(patient_id__in=list(patient_ids))
    return covering


def authorization_lock_covering(*, purpose_id: int, patient_ids: Iterable[int]) -> dict[int, Authorization]:
    """Lock the authorizations that cover these patients, then decide coverage again after the lock.

    Must run inside the transaction that sends. The rows are locked FOR SHARE in primary-key order, so
    concurrent senders do not block each other while a revocation (which locks FOR UPDATE) waits for the
    sending transaction to commit; a revocation that committed before the lock is seen by the re-check,
    which is a new statement with a new snapshot. Returns {patient_id: covering authorization}.
    """
    patient_ids = list(patient_ids)
    candidate_ids = list(
        authorization_covering_list(purpose_id=purpose_id, patient_ids=patient_ids)
        .order_by("id")
        .values_list("id", flat=True)
    )
    if not candidate_ids:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM consent_authorization WHERE id = ANY(%s) ORDER BY id FOR SHARE", [candidate_ids]
            )
    else:
        # SQLite ignores row locks; the IMMEDIATE transaction already holds the database's write lock.
        list(Authorization.objects.select_for_update().filter(id__in=candidate_ids).order_by("id"))
    covered = authorization_covering_list(purpose_id=purpose_id, patient_ids=patient_ids).filter(
        id__in=candidate_ids
    )
    # With several covering authorizations, the most recent is the evidence recorded.
    return {authorization.patient_id: authorization for authorization in covered.order_by("id")}


def authorization_gap_list(*, purpose_id: int, patient_ids: Iterable[int]) -> dict[int, str]:
    """For patients the predicate does not cover now, why not: revoked, expired, wrong purpose or none.

    Evidence for a blocked delivery (R-SEND-EVIDENCE), not a decision: the decision is the predicate's.
    """
    patient_ids = set(patient_ids)
    covered = set(
        authorization_covering_list(purpose_id=purpose_id, patient_ids=patient_ids).values_list(
            "patient_id", flat=True
        )
    )
    uncovered = patient_ids - covered
    rows = (
        Authorization.objects.filter(patient_id__in=uncovered)
        .annotate(
            is_revoked=Case(When(revocation__isnull=False, then=Value(True)), default=Value(False)),
            is_expired=Case(When(Q(expires_at__lte=Now()), then=Value(True)), default=Value(False)),
        )
        .values_list("patient_id", "purpose_id", "is_revoked", "is_expired")
    )
    same_purpose: dict[int, set[str]] = {}
    other_purpose: set[int] = set()
    for patient_id, row_purpose_id, is_revoked, is_expired in rows:
        if row_purpose_id != purpose_id:
            other_purpose.add(patient_id)
            continue
        marks = same_purpose.setdefault(patient_id, set())
        if is_revoked:
            marks.add(CoverageGap.REVOKED)
        elif is_expired:
            marks.add(CoverageGap.EXPIRED)
    gaps = {}
    for patient_id in uncovered:
        marks = same_purpose.get(patient_id, set())
        # A revocation is the patient's own word, so it wins over an expiry when both apply.
        if CoverageGap.REVOKED in marks:
            gaps[patient_id] = CoverageGap.REVOKED
        elif CoverageGap.EXPIRED in marks:
            gaps[patient_id] = CoverageGap.EXPIRED
        elif patient_id in other_purpose:
            gaps[patient_id] = CoverageGap.WRONG_PURPOSE
        else:
            gaps[patient_id] = CoverageGap.NO_AUTHORIZATION
    return gaps
