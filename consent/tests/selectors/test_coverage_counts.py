"""coverage_reason_counts (one statement, for live segment counts at a million patients) gives the same account as
THE predicate and the per-patient reasons: authorization_gap_list, then patient_suppression_list for the covered
(R-SEND-COVERED, R-SEND-EVIDENCE, R-BOUNCE-SUPPRESS)."""
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import AuthorizationDefect, Patient, Revocation, Suppression
from consent.selectors.coverage import (
    CoverageGap,
    authorization_gap_list,
    coverage_reason_counts,
    patient_suppression_list,
)
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

    counts = coverage_reason_counts(purpose_id=purpose.pk, patients=Patient.objects.filter(pk=patient.pk))

    assert {reason: n for reason, n in counts.items() if n} == {expected: 1}
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
        counts = coverage_reason_counts(purpose_id=purpose.pk, patients=queryset)

        assert {reason: n for reason, n in counts.items() if n} == dict(
            _per_patient_account(purpose_id=purpose.pk, patient_ids=ids)
        )
        assert sum(counts.values()) == len(ids)
    assert set(coverage_reason_counts(purpose_id=purpose.pk, patients=Patient.objects.none())) == {
        "covered", *(value for name, value in vars(CoverageGap).items() if name.isupper())
    }
