"""The report's coverage check agrees with THE predicate on random histories (issue 12, item 3).

campaigns.selectors.coverage.covered_at_send (and sent_without_coverage_counts) keep their own query: a report
streams a million rows and carries the check on every one, set-based, from the stored evidence. Here Hypothesis
proves that the evidence-based answer is the predicate's answer at the moment of the check:

for every sent delivery, covered_at_send is True exactly when the authorization it names was in
consent.selectors.coverage.authorization_covering_list(at=checked_at, lasting=sent_at - checked_at) for the
campaign's purpose and the delivery's patient, asked with what the database knew at the check.

A history, built through the real services: random patients and two purposes with published forms; authorizations
signed at random instants with a random expiry date or an expiry event; "early" sends checked at instants before
anything ends an authorization; then revocations, defects and expiry events (occurring at random instants, before or
after the sends) recorded now; then "late" sends checked after all of them. Instants lie on a grid of whole seconds
around two anchors (a minute before the history starts, a minute after), so an expiry exactly at a check, or at a
send, is drawn often. Each send's predicate answer is taken when it happens; the report is computed at the end,
from the evidence alone. The named authorization is the covering one when there is one, or else any authorization
of the history (expired, revoked, another patient's, another purpose's): forged evidence, which the report must
catch (R-SEND-COVERED).
"""
from datetime import timedelta

import pytest
from django.db import connection
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.tests.factories import staff_make
from campaigns.models import Delivery
from campaigns.selectors.coverage import covered_at_send, sent_without_coverage_counts
from campaigns.tests.factories import campaign_make
from consent.models import AuthorizationDefect, ExpiryEvent, Revocation
from consent.selectors.coverage import authorization_covering_list
from consent.services.authorizations import (
    authorization_defect_record,
    authorization_grant,
    authorization_revoke,
    expiry_event_record,
)
from consent.tests.factories import form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

EARLY, LATE = -60, 60  # seconds from the history's start
GRID = range(-2, 3)  # whole seconds around an anchor

instant = st.tuples(st.sampled_from([EARLY, LATE]), st.sampled_from(GRID)).map(sum)
grant = st.fixed_dictionaries(
    {
        "patient": st.integers(0, 2),
        "purpose": st.sampled_from([0, 0, 0, 1]),  # mostly the purpose most sends are for
        # Mostly signed before the early checks, so that there is coverage to lose.
        "signed": st.tuples(st.sampled_from([EARLY, EARLY, EARLY, LATE]), st.sampled_from(GRID)).map(sum),
        # Seconds after the signature (a few: within the early checks' reach; about two minutes: the late ones');
        # None: it ends on an expiry event instead.
        "expires": st.none() | st.sampled_from([1, 2, 3, 4, 5, 6, 117, 118, 119, 120, 121, 122, 123, 124]),
    }
)
ending = st.one_of(
    st.tuples(st.just("revoke"), st.integers(0, 2), st.integers(0, 1)),
    st.tuples(st.just("defect"), st.integers(0, 9), st.sampled_from(AuthorizationDefect.Reason.values)),
    st.tuples(st.just("event"), st.integers(0, 9), instant),
)


def sends(anchor: int):
    return st.lists(
        st.fixed_dictionaries(
            {
                "purpose": st.sampled_from([0, 0, 0, 1]),
                "checked": st.sampled_from(GRID).map(lambda k: anchor + k),
                "window": st.sampled_from([0, 0, 1, 2, 3]),
                "names": st.lists(st.integers(0, 19), min_size=3, max_size=3),  # per patient: which authorization
            }
        ),
        max_size=3,
    )


history = st.fixed_dictionaries(
    {
        "patients": st.sampled_from([1, 1, 2, 3]),
        "grants": st.lists(grant, min_size=1, max_size=6),
        "early": sends(EARLY),
        "endings": st.lists(ending, max_size=6),
        "late": sends(LATE),
    }
)


def _database_now():
    """The database's clock (STATEMENT_TIMESTAMP: the test runs inside one transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT STATEMENT_TIMESTAMP()")
        return cursor.fetchone()[0]


def test_r_send_covered_r_send_evidence_covered_at_send_agrees_with_the_predicate_on_random_histories():
    officer = staff_make(role="compliance officer")
    author = staff_make(role="marketer")

    @hypothesis_settings(
        max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
    )
    @given(spec=history)
    # Always tried, besides the random ones: an expiry event recorded after an early send, dated before it (not
    # known at the check: covered), an expiry date exactly at the send (uncovered), a revocation and a defect after it (covered), then late sends after all three.
    @example(
        spec={
            "patients": 2,
            "grants": [
                {"patient": 0, "purpose": 0, "signed": EARLY - 2, "expires": None},
                {"patient": 1, "purpose": 0, "signed": EARLY - 2, "expires": 3},  # expires at the send
                {"patient": 1, "purpose": 1, "signed": EARLY - 2, "expires": None},
            ],
            "early": [
                {"purpose": 0, "checked": EARLY - 1, "window": 2, "names": [0, 0, 0]},
                {"purpose": 0, "checked": EARLY - 1, "window": 2, "names": [0, 10, 0]},  # forged: names it anyway
            ],
            "endings": [("event", 0, EARLY - 2), ("revoke", 1, 0), ("defect", 2, "defect_compound")],
            "late": [
                {"purpose": 0, "checked": LATE, "window": 0, "names": [0, 0, 0]},
                {"purpose": 1, "checked": LATE, "window": 0, "names": [2, 2, 2]},
            ],
        }
    )
    def check(spec):
        # Each example makes its own patients and purposes; the queries below are limited to them.
        purposes = [purpose_make() for _ in range(2)]
        forms = [form_published_make(purpose) for purpose in purposes]
        patients = [patient_make() for _ in range(spec["patients"])]
        start = _database_now().replace(microsecond=0)

        def at(seconds: int):
            return start + timedelta(seconds=seconds)

        authorizations = []
        for row in spec["grants"]:
            patient = patients[row["patient"] % len(patients)]
            authorizations.append(
                authorization_grant(
                    actor=None,
                    patient=patient,
                    purpose=purposes[row["purpose"]],
                    form_version=forms[row["purpose"]],
                    signed_at=at(row["signed"]),
                    expires_at=None if row["expires"] is None else at(row["signed"] + row["expires"]),
                    expiry_event="" if row["expires"] is not None else "The end of the programme.",
                )
            )
        expected: dict[int, bool] = {}

        def send(probe):
            if not authorizations:
                return
            purpose = purposes[probe["purpose"]]
            checked_at = at(probe["checked"])
            lasting = timedelta(seconds=probe["window"])
            # The predicate's answer at the check, with what the database knows now (nothing is recorded between
            # the check and the send: the sender's locks make a revocation wait for it, ADR 0001).
            covering: dict[int, set[int]] = {}
            for patient_id, authorization_id in authorization_covering_list(
                purpose_id=purpose.pk, patient_ids=[p.pk for p in patients], at=checked_at, lasting=lasting
            ).values_list("patient_id", "id"):
                covering.setdefault(patient_id, set()).add(authorization_id)
            campaign = campaign_make(purpose=purpose, author=author)
            for patient, choice in zip(patients, probe["names"]):
                found = sorted(covering.get(patient.pk, ()))
                named = found[0] if found and choice < 10 else authorizations[choice % len(authorizations)].pk
                delivery = Delivery.objects.create(
                    campaign=campaign,
                    patient=patient,
                    status=Delivery.Status.SENT,
                    authorization_id=named,
                    checked_at=checked_at,
                    sent_at=checked_at + lasting,
                )
                expected[delivery.pk] = named in covering.get(patient.pk, ())

        for probe in spec["early"]:
            send(probe)
        for kind, first, second in spec["endings"]:
            if kind == "revoke":
                authorization_revoke(
                    actor=None,
                    patient_id=patients[first % len(patients)].pk,
                    purpose_id=purposes[second].pk,
                    channel=Revocation.Channel.PORTAL,
                )
            elif kind == "defect" and authorizations:
                authorization = authorizations[first % len(authorizations)]
                if not authorization.defects.filter(reason=second).exists():
                    authorization_defect_record(actor=officer, authorization_id=authorization.pk, reason=second)
            elif kind == "event":
                # An event ends only an authorization that expires on one: pick among those.
                on_event = [a for a in authorizations if a.expiry_event]
                authorization = on_event[first % len(on_event)] if on_event else None
                if authorization and not ExpiryEvent.objects.filter(authorization=authorization).exists():
                    expiry_event_record(actor=officer, authorization_id=authorization.pk, occurred_at=at(second))
        # Everything that ended an authorization was recorded before the late checks.
        assert _database_now() < at(LATE + min(GRID))
        for probe in spec["late"]:
            send(probe)

        deliveries = Delivery.objects.filter(pk__in=expected)
        reported = {}
        for purpose in purposes:
            reported |= dict(
                deliveries.filter(campaign__purpose=purpose)
                .annotate(covered=covered_at_send(purpose_id=purpose.pk))
                .values_list("id", "covered")
            )
        assert reported == expected, spec
        assert sent_without_coverage_counts(deliveries)["total"] == sum(not c for c in expected.values()), spec

    check()
