"""The patient record's states and the renewals agree with THE predicate on random histories (issue 12, item 3).

The staff patient record (consent.selectors.patients) calls an authorization active exactly when
authorization_covering_list covers it, and names why it does not otherwise; the renewals
(consent.services.renewals) keep their own query for the candidates (authorizations that ended by their date) and
ask the predicate whether the patient is covered now. Hypothesis proves, on random histories built through the
real services (patients, two purposes with or without a published form, authorizations signed at random past
instants with a random expiry date, before or after now, or an expiry event; then revocations, defects and expiry
events occurring before or after now), that

- a row is active exactly when the predicate covers it, and the strongest state of a patient's rows for a purpose
  is the reason authorization_gap_list gives (R-AUTH-DEFECTIVE: each ground its own);
- a renewal candidate is an authorization the predicate covered until its expiry date and does not cover now; a
  patient is invited exactly when they have one, are not covered, were never revoked for the purpose, and the
  purpose has a published form; a second run invites nobody more.
"""
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.tests.factories import staff_make
from consent.models import AuthorizationDefect, ExpiryEvent, Invitation, Revocation
from consent.selectors.coverage import CoverageGap, authorization_covering_list, authorization_gap_list
from consent.selectors.patients import AuthorizationState, authorization_state, patient_authorization_rows
from consent.services.authorizations import (
    authorization_defect_record,
    authorization_grant,
    authorization_revoke,
    expiry_event_record,
)
from consent.services.renewals import (
    RENEWAL_WINDOW,
    authorization_renewal_candidate_list,
    authorization_renewals_invite,
)
from consent.tests.factories import form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

DAYS = [-400, -40, -31, -29, -10, -1]
# Expiry dates around now and around the end of the renewal window (never exactly on it: the window's start is
# this process's clock, its end the database's).
EXPIRES = [None, -40.0, -31.0, -29.0, -1.0, -0.001, 0.04, 1.0, 30.0]

grant = st.fixed_dictionaries(
    {
        "patient": st.integers(0, 2),
        "purpose": st.sampled_from([0, 0, 1]),
        "signed": st.sampled_from(DAYS),
        "expires": st.sampled_from(EXPIRES),  # days from now; None: it ends on an expiry event
    }
)
ending = st.one_of(
    st.tuples(st.just("revoke"), st.integers(0, 2), st.integers(0, 1)),
    st.tuples(st.just("defect"), st.integers(0, 9), st.sampled_from(AuthorizationDefect.Reason.values)),
    st.tuples(st.just("event"), st.integers(0, 9), st.sampled_from([-20.0, -0.001, 1.0])),
)
history = st.fixed_dictionaries(
    {
        "patients": st.sampled_from([1, 2, 3]),
        "published": st.tuples(st.booleans(), st.booleans()),
        "grants": st.lists(grant, min_size=1, max_size=6),
        "endings": st.lists(ending, max_size=5),
    }
)
RANK = [AuthorizationState.REVOKED, AuthorizationState.DEFECTIVE, AuthorizationState.ENDED_BY_EVENT,
        AuthorizationState.EXPIRED]


def _history_make(spec, officer):
    purposes = [purpose_make() for _ in range(2)]
    forms = [form_published_make(purpose) if published else None for purpose, published in
             zip(purposes, spec["published"])]
    patients = [patient_make() for _ in range(spec["patients"])]
    now = timezone.now()
    authorizations = []
    for row in spec["grants"]:
        signed_at = now + timedelta(days=row["signed"])
        expires = row["expires"]
        if expires is not None and expires <= row["signed"]:
            expires = row["signed"] + 0.5  # the database requires an expiry after the signature
        authorizations.append(
            authorization_grant(
                actor=None,
                patient=patients[row["patient"] % len(patients)],
                purpose=purposes[row["purpose"]],
                form_version=forms[row["purpose"]],
                signed_at=signed_at,
                expires_at=None if expires is None else now + timedelta(days=expires),
                expiry_event="The end of the programme." if row["expires"] is None else "",
            )
        )
    for kind, first, second in spec["endings"]:
        if kind == "revoke":
            authorization_revoke(
                actor=None,
                patient_id=patients[first % len(patients)].pk,
                purpose_id=purposes[second].pk,
                channel=Revocation.Channel.PORTAL,
            )
        elif kind == "defect":
            authorization = authorizations[first % len(authorizations)]
            if not authorization.defects.filter(reason=second).exists():
                authorization_defect_record(actor=officer, authorization_id=authorization.pk, reason=second)
        else:
            on_event = [a for a in authorizations if a.expiry_event]
            authorization = on_event[first % len(on_event)] if on_event else None
            if authorization and not ExpiryEvent.objects.filter(authorization=authorization).exists():
                expiry_event_record(
                    actor=officer, authorization_id=authorization.pk, occurred_at=now + timedelta(days=second)
                )
    return purposes, patients, authorizations


def test_r_auth_defective_the_patient_records_states_agree_with_the_predicate_on_random_histories():
    officer = staff_make(role="compliance officer")

    @hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=history)
    # Always tried: two defects of one authorization (the gap names the strongest, as the rank orders them).
    @example(
        spec={
            "patients": 1,
            "published": (False, False),
            "grants": [{"patient": 0, "purpose": 0, "signed": -400, "expires": None}],
            "endings": [("defect", 0, "defect_missing_element"), ("defect", 0, "defect_compound")],
        }
    )
    def check(spec):
        purposes, patients, _ = _history_make(spec, officer)
        for patient in patients:
            rows = patient_authorization_rows(patient_id=patient.pk)
            for row in rows:
                assert authorization_state(row.authorization) == row.state, spec
            for purpose in purposes:
                covering = set(
                    authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).values_list(
                        "id", flat=True
                    )
                )
                mine = [row for row in rows if row.authorization.purpose_id == purpose.pk]
                assert {row.authorization.pk for row in mine if row.is_active} == covering, spec
                gaps = authorization_gap_list(purpose_id=purpose.pk, patient_ids=[patient.pk])
                if covering:
                    assert gaps == {}, spec
                    continue
                states = {row.state for row in mine}
                strongest = next((state for state in RANK if state in states), None)
                if strongest == AuthorizationState.DEFECTIVE:
                    expected = min(reason for row in mine for reason in row.defect_reasons)
                elif strongest is not None:
                    expected = strongest
                elif len(mine) < len(rows):
                    expected = CoverageGap.WRONG_PURPOSE
                else:
                    expected = CoverageGap.NO_AUTHORIZATION
                assert gaps == {patient.pk: expected}, spec

    check()


def test_renewals_agree_with_the_predicate_on_random_histories():
    officer = staff_make(role="compliance officer")

    @hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=history)
    # Always tried: just inside the renewal window (invited), just outside it (not), and revoked (never asked again).
    @example(
        spec={
            "patients": 3,
            "published": (True, True),
            "grants": [
                {"patient": 0, "purpose": 0, "signed": -400, "expires": -29.0},
                {"patient": 1, "purpose": 0, "signed": -400, "expires": -31.0},
                {"patient": 2, "purpose": 0, "signed": -400, "expires": -1.0},
            ],
            "endings": [("revoke", 2, 0)],
        }
    )
    def check(spec):
        purposes, patients, authorizations = _history_make(spec, officer)
        ours = {a.pk for a in authorizations}
        candidates = [a for a in authorization_renewal_candidate_list() if a.pk in ours]
        for candidate in candidates:
            # Ended by its date: the predicate covered it until its expiry date and does not now.
            covered_before = authorization_covering_list(
                purpose_id=candidate.purpose_id, at=candidate.expires_at - timedelta(microseconds=1)
            ).filter(pk=candidate.pk)
            assert covered_before.exists(), spec
            assert not authorization_covering_list(purpose_id=candidate.purpose_id).filter(pk=candidate.pk).exists()

        authorization_renewals_invite()
        invited = set(
            Invitation.objects.filter(channel=Invitation.Channel.RENEWAL, patient__in=patients).values_list(
                "patient_id", "purpose_id"
            )
        )
        now = timezone.now()
        expected = set()
        for patient in patients:
            for purpose, published in zip(purposes, spec["published"]):
                mine = [a for a in authorizations if (a.patient_id, a.purpose_id) == (patient.pk, purpose.pk)]
                covered = authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists()
                revoked = Revocation.objects.filter(authorization__in=mine).exists()
                ended_by_date = [
                    a for a in mine
                    if a.expires_at is not None and now - RENEWAL_WINDOW < a.expires_at <= now
                    and not a.defects.exists() and not ExpiryEvent.objects.filter(authorization=a).exists()
                ]
                if ended_by_date and not covered and not revoked and published:
                    expected.add((patient.pk, purpose.pk))
        assert invited == expected, spec
        authorization_renewals_invite()  # again: the task is safe to run twice
        assert Invitation.objects.filter(channel=Invitation.Channel.RENEWAL, patient__in=patients).count() == len(
            invited
        ), spec

    check()
