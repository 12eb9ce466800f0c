"""Three accounts of who a message for a purpose would reach, held equal on every case (R-SEND-COVERED,
R-SEND-EVIDENCE, R-BOUNCE-SUPPRESS): the per-patient reasons (authorization_gap_list, then patient_suppression_list
for the covered), the launch's one statement over the evidence (coverage_reason_sql, THE predicate embedded), and
the live counts over the authorizations' standing (coverage_standing_counts, ADR 0021)."""
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from consent.models import AuthorizationDefect, Patient, Revocation, Suppression
from consent.selectors.coverage import (
    CoverageGap,
    authorization_gap_list,
    coverage_reason_execute,
    coverage_reason_sql,
    patient_suppression_list,
)
from consent.selectors.standing import coverage_standing_counts
from consent.services.authorizations import (
    authorization_defect_record,
    authorization_grant,
    authorization_revoke,
    expiry_event_record,
)
from consent.services.suppressions import suppression_record
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _per_patient_account(*, purpose_id: int, patient_ids: list[int]) -> Counter:
    """What the launch and the screens ask patient by patient (delivery_block_reason_list's two steps)."""
    gaps = authorization_gap_list(purpose_id=purpose_id, patient_ids=patient_ids)
    gaps |= patient_suppression_list(patient_ids=[pid for pid in patient_ids if pid not in gaps])
    account = Counter(gaps.values())
    account["covered"] = len(patient_ids) - len(gaps)
    return +account  # zeros dropped


def _statement_account(*, purpose_id: int, patients) -> Counter:
    """What the launch inserts from: coverage_reason_sql's rows, counted by reason."""
    built = coverage_reason_sql(purpose_id=purpose_id, patients=patients)
    if built is None:
        return Counter()
    statement, params = built
    with transaction.atomic(), connection.cursor() as cursor:
        coverage_reason_execute(cursor, f"SELECT r.reason, COUNT(*) FROM ({statement}) r GROUP BY r.reason", params)
        return +Counter(dict(cursor.fetchall()))


def _standing_account(*, purpose_id: int, patients) -> Counter:
    return +Counter(coverage_standing_counts(purpose_id=purpose_id, patients=patients))


def _revoke(patient, purpose):
    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel=Revocation.Channel.PORTAL)


def _defect(reason):
    def make(patient, purpose):
        authorization = authorization_make(patient=patient, purpose=purpose)
        authorization_defect_record(actor=None, authorization_id=authorization.pk, reason=reason)

    return make


def _event_occurred(patient, purpose):
    authorization = authorization_grant(
        actor=None, patient=patient, purpose=purpose, signed_at=timezone.now() - timedelta(days=1), expires_at=None,
        expiry_event="The CPAP machine is returned",
    )
    expiry_event_record(actor=None, authorization_id=authorization.pk, occurred_at=timezone.now() - timedelta(hours=1))


def _suppress(reason):
    def make(patient, purpose):
        authorization_make(patient=patient, purpose=purpose)
        suppression_record(actor=None, email=patient.email, reason=reason)

    return make


# One patient per case: what they hold, and the reason both accounts must give.
CASES = {
    "covered": (lambda p, purpose: authorization_make(patient=p, purpose=purpose), "covered"),
    "none": (lambda p, purpose: None, CoverageGap.NO_AUTHORIZATION),
    "other purpose only": (
        lambda p, purpose: authorization_make(patient=p, purpose=purpose_make()),
        CoverageGap.WRONG_PURPOSE,
    ),
    "expired": (
        lambda p, purpose: authorization_make(
            patient=p, purpose=purpose, signed_ago=timedelta(days=30), expires_in=-timedelta(seconds=1)
        ),
        CoverageGap.EXPIRED,
    ),
    "revoked": (lambda p, purpose: (authorization_make(patient=p, purpose=purpose), _revoke(p, purpose)), "revoked"),
    "revoked and expired: revoked first": (
        lambda p, purpose: (
            authorization_make(patient=p, purpose=purpose, signed_ago=timedelta(days=30), expires_in=-timedelta(days=1)),
            authorization_make(patient=p, purpose=purpose),
            _revoke(p, purpose),
        ),
        CoverageGap.REVOKED,
    ),
    "expiry event occurred": (_event_occurred, CoverageGap.EXPIRY_EVENT),
    **{
        f"defect {reason}": (_defect(reason), reason)
        for reason in AuthorizationDefect.Reason.values
    },
    "signed in the future, other purpose too": (
        lambda p, purpose: (
            authorization_make(patient=p, purpose=purpose, signed_ago=-timedelta(days=1)),
            authorization_make(patient=p, purpose=purpose_make()),
        ),
        CoverageGap.WRONG_PURPOSE,
    ),
    "signed in the future only": (
        lambda p, purpose: authorization_make(patient=p, purpose=purpose, signed_ago=-timedelta(days=1)),
        CoverageGap.NO_AUTHORIZATION,
    ),
    "covered, address bounced": (_suppress(Suppression.Reason.HARD_BOUNCE), CoverageGap.BOUNCED),
    "covered, address complained": (_suppress(Suppression.Reason.COMPLAINT), CoverageGap.SUPPRESSED),
    "covered and expired, both for the purpose": (
        lambda p, purpose: (
            authorization_make(patient=p, purpose=purpose, signed_ago=timedelta(days=30), expires_in=-timedelta(days=1)),
            authorization_make(patient=p, purpose=purpose),
        ),
        "covered",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_r_send_covered_counts_in_one_statement_agree_with_the_per_patient_reasons(case):
    """R-SEND-COVERED, R-SEND-EVIDENCE: each case on its own, among patients of every other kind."""
    purpose = purpose_make()
    make, expected = CASES[case]
    patient = patient_make()
    make(patient, purpose)
    others = [patient_make(state="WI") for _ in range(2)]
    authorization_make(patient=others[0], purpose=purpose)

    only = Patient.objects.filter(pk=patient.pk)

    assert dict(_standing_account(purpose_id=purpose.pk, patients=only)) == {expected: 1}
    assert dict(_statement_account(purpose_id=purpose.pk, patients=only)) == {expected: 1}
    assert dict(_per_patient_account(purpose_id=purpose.pk, patient_ids=[patient.pk])) == {expected: 1}


def test_r_send_covered_counts_of_a_whole_population_equal_the_per_patient_account():
    """All the cases at once, counted over every patient and over a segment-like subset."""
    purpose = purpose_make()
    patients = []
    for make, _ in CASES.values():
        for state in ("IL", "IL", "WI"):
            patient = patient_make(state=state)
            make(patient, purpose)
            patients.append(patient)

    for queryset in (Patient.objects.all(), Patient.objects.filter(state="IL")):
        ids = list(queryset.values_list("id", flat=True))
        per_patient = _per_patient_account(purpose_id=purpose.pk, patient_ids=ids)

        assert _standing_account(purpose_id=purpose.pk, patients=queryset) == per_patient
        assert _statement_account(purpose_id=purpose.pk, patients=queryset) == per_patient
        assert per_patient.total() == len(ids)
    none = coverage_standing_counts(purpose_id=purpose.pk, patients=Patient.objects.none())
    assert none == dict.fromkeys(["covered", *(value for name, value in vars(CoverageGap).items() if name.isupper())], 0)
