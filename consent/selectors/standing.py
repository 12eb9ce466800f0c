"""The segment builder's live counts at the size of a health system, read from the authorizations' standing
(consent.models.AuthorizationStanding, ADR 0021) instead of the evidence.

Counts only: a marketer's estimate of who a campaign would reach. Nothing here decides a send: the launch
classifies with THE predicate's own query (consent.selectors.coverage.coverage_reason_sql) and the sender checks
it again under lock. Tests hold this account equal to the predicate's on every case
(consent/tests/selectors/test_coverage_counts.py), and `authorization_standing --check` holds the rows equal to
the evidence.
"""
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Least, Now

from consent.models import (
    Authorization,
    AuthorizationDefect,
    AuthorizationStanding,
    ExpiryEvent,
    Patient,
    Revocation,
    Suppression,
)
from consent.selectors.coverage import (
    _ALL_GAPS,
    _MARK_RANK,
    COVERED,
    PERMANENT_ENDS,
    CoverageGap,
    coverage_reason_execute,
)

_NO_MARK = len(_MARK_RANK)  # ranks 0 .. len-1 are _MARK_RANK's; this one is "none"


def _per_patient_standing(purpose_id: int) -> QuerySet:
    """One row per patient holding an authorization for the purpose: covered now (1 or 0), and the rank in
    _MARK_RANK of the strongest end among them (_NO_MARK when none has ended)."""
    now = Now()
    live = (
        Q(ended_by="")
        & Q(signed_at__lte=now)
        & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        & (Q(expiry_event_at__isnull=True) | Q(expiry_event_at__gt=now))
    )
    rank = {reason: position for position, reason in enumerate(_MARK_RANK)}
    number = IntegerField()
    ended = Case(
        *(When(ended_by=end, then=Value(rank[end])) for end in PERMANENT_ENDS),
        default=Value(_NO_MARK),
        output_field=number,
    )
    event = Case(
        When(expiry_event_at__lte=now, then=Value(rank[CoverageGap.EXPIRY_EVENT])),
        default=Value(_NO_MARK),
        output_field=number,
    )
    expired = Case(
        When(expires_at__lte=now, then=Value(rank[CoverageGap.EXPIRED])), default=Value(_NO_MARK), output_field=number
    )
    return (
        AuthorizationStanding.objects.filter(purpose_id=purpose_id)
        .values("patient_id")
        .annotate(
            covered=Max(Case(When(live, then=Value(1)), default=Value(0), output_field=number)),
            mark=Min(Least(ended, event, expired)),
        )
        .order_by()
    )


def coverage_standing_counts(*, purpose_id: int, patients: QuerySet[Patient]) -> dict[str, int]:
    """How many of `patients` would be sent a message for the purpose now (COVERED) and how many not, by reason,
    as coverage_reason_sql would classify them, counted in one statement over the standing. Every key is
    returned, zeros included."""
    counts = dict.fromkeys([COVERED, *_ALL_GAPS], 0)
    try:
        patients_sql, patients_params = (
            patients.order_by().values("id", "email_digest", "authorized_purposes").query.sql_with_params()
        )
    except EmptyResultSet:  # a queryset that cannot match anyone (.none())
        return counts
    standing_sql, standing_params = _per_patient_standing(purpose_id).query.sql_with_params()
    ranks = " ".join(f"WHEN {position} THEN %s" for position in range(len(_MARK_RANK)))
    # A patient holding none for the purpose has "another purpose only" if they hold any; one holding some for
    # it that neither covers nor has ended (signed in the future) if they hold one for another purpose too.
    statement = f"""
        SELECT r.reason, COUNT(*) FROM (
          SELECT CASE
                   WHEN st.covered = 1 THEN
                     CASE WHEN s.reason IS NULL THEN %s WHEN s.reason = %s THEN %s ELSE %s END
                   WHEN st.mark < {_NO_MARK} THEN CASE st.mark {ranks} END
                   WHEN m.authorized_purposes > CASE WHEN st.patient_id IS NULL THEN 0 ELSE 1 END THEN %s
                   ELSE %s
                 END AS reason
            FROM ({patients_sql}) m
            LEFT JOIN consent_suppression s ON s.email_digest = m.email_digest
            LEFT JOIN ({standing_sql}) st ON st.patient_id = m.id
        ) r GROUP BY r.reason
    """
    params = [
        COVERED,
        Suppression.Reason.HARD_BOUNCE,
        CoverageGap.BOUNCED,
        CoverageGap.SUPPRESSED,
        *_MARK_RANK,
        CoverageGap.WRONG_PURPOSE,
        CoverageGap.NO_AUTHORIZATION,
        *patients_params,
        *standing_params,
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        coverage_reason_execute(cursor, statement, params)  # the same planner settings as ADR 0020's statement
        for reason, n in cursor.fetchall():
            counts[reason] += int(n)
    return counts


def authorization_standing_expected() -> QuerySet:
    """Every authorization with the standing its evidence gives it, as AuthorizationStanding's columns: what the
    rebuild writes and the check compares with."""
    this = OuterRef("pk")
    return Authorization.objects.order_by("pk").annotate(
        expected_event_at=Subquery(ExpiryEvent.objects.filter(authorization=this).values("occurred_at")[:1]),
        expected_ended_by=Case(
            When(Exists(Revocation.objects.filter(authorization=this)), then=Value(CoverageGap.REVOKED)),
            default=Coalesce(
                Subquery(AuthorizationDefect.objects.filter(authorization=this).order_by("reason").values("reason")[:1]),
                Value(""),
            ),
        ),
    )


_COLUMNS = ("patient_id", "purpose_id", "signed_at", "expires_at")


def authorization_standing_mismatch_counts() -> dict[str, int]:
    """How many standings differ from their evidence (missing, extra or unequal), and how many patients' counts of
    authorized purposes are wrong: {"standings": n, "patients": n}; zero and zero when the live counts can be
    trusted. Both sides are read in id order and walked together, a chunk at a time."""
    stored = AuthorizationStanding.objects.order_by("pk").values_list(
        "pk", *_COLUMNS, "expiry_event_at", "ended_by"
    ).iterator(chunk_size=20_000)
    expected = authorization_standing_expected().values_list(
        "pk", *_COLUMNS, "expected_event_at", "expected_ended_by"
    ).iterator(chunk_size=20_000)
    wrong = 0
    have, want = next(stored, None), next(expected, None)
    while have is not None or want is not None:
        if want is None or (have is not None and have[0] < want[0]):
            wrong += 1  # a standing without its authorization
            have = next(stored, None)
        elif have is None or want[0] < have[0]:
            wrong += 1  # an authorization without its standing
            want = next(expected, None)
        else:
            wrong += have != want
            have, want = next(stored, None), next(expected, None)
    patients = (
        Patient.objects.annotate(held=Count("authorizations__purpose", distinct=True))
        .exclude(authorized_purposes=F("held"))
        .count()
    )
    return {"standings": wrong, "patients": patients}
