"""The live-count index (campaigns.selectors.count_index, ADR 0022) counts what the SQL statement counts
(consent.selectors.standing.coverage_standing_counts over campaigns.segments.segment_queryset), on random rule trees
over patients of every coverage case, and stays equal to it as the data changes under it: through the services,
in transactions that commit out of order, and after a failure, when SQL answers instead (R-SEND-COVERED: a count
never says a patient is covered when THE predicate's statement would not).

The index reads committed data on a connection of its own, so these tests commit (transaction=True).
"""
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.segments import segment_queryset, segment_rules_validate
from campaigns.selectors import count_index as count_index_module
from campaigns.selectors.count_index import CountIndex, CountIndexUnavailable
from campaigns.selectors.segments import segment_counts
from campaigns.tests.services.test_segments import RULES, TODAY, _patients_make
from conftest import requires_postgresql
from consent.models import Patient, PatientCondition, ProgramEnrolment, Revocation, Suppression
from consent.selectors.standing import coverage_standing_counts
from consent.services.authorizations import authorization_revoke
from consent.services.suppressions import suppression_record
from consent.tests.factories import authorization_make, patient_make, purpose_make
from consent.tests.selectors.test_coverage_counts import CASES

pytestmark = [requires_postgresql, pytest.mark.django_db(transaction=True)]

CHECKED_RULES = [
    None,  # every patient
    {"op": "and", "rules": [{"field": "state", "in": ["IL", "WI"]}]},
    {"op": "or", "rules": [{"field": "condition", "any": ["E11"]}, {"not": {"field": "age", "min": 60}}]},
    {"op": "and", "rules": [{"field": "program", "any": ["DPP"]}, {"field": "last_visit", "after": "2025-01-01"}]},
]


def _sql(rules, purpose_id):
    patients = Patient.objects.all() if rules is None else segment_queryset(rules, today=TODAY)
    return coverage_standing_counts(purpose_id=purpose_id, patients=patients)


def _population():
    """Random patients (attributes as test_segments makes them) holding every coverage case for two purposes."""
    patients = _patients_make(count=48, seed=22)
    purposes = [purpose_make(), purpose_make()]
    cases = list(CASES.values())
    for number, made in enumerate(patients):
        patient = Patient.objects.get(pk=made["id"])
        make, _ = cases[number % len(cases)]
        make(patient, purposes[number % 2])
    return purposes


@pytest.fixture
def index():
    made = CountIndex()
    yield made
    if made._connection is not None:
        made._connection.close()


def _assert_equal(index, purposes):
    for purpose in purposes:
        for rules in CHECKED_RULES:
            assert index.counts(rules=rules, purpose_id=purpose.pk, year=TODAY.year) == _sql(rules, purpose.pk), rules


def test_r_send_covered_the_index_counts_what_the_statement_counts_on_random_segments(index):
    purposes = _population()
    index.load()
    assert index.patients == Patient.objects.count()

    @settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(rules=RULES, which=st.integers(0, 1))
    def check(rules, which):
        if segment_rules_validate(rules):
            return
        purpose_id = purposes[which].pk
        assert index.counts(rules=rules, purpose_id=purpose_id, year=TODAY.year) == _sql(rules, purpose_id), rules

    check()


def test_r_send_covered_changes_are_read_before_each_answer(index):
    """Every kind of write the counts depend on, each read at the next answer with no reload."""
    purposes = _population()
    index.load()
    loaded = index.load_seconds
    purpose = purposes[0]
    someone = Patient.objects.order_by("id").first()

    authorization_make(patient=someone, purpose=purpose)
    _assert_equal(index, purposes)
    authorization_revoke(actor=None, patient_id=someone.pk, purpose_id=purpose.pk, channel=Revocation.Channel.PORTAL)
    _assert_equal(index, purposes)
    suppression_record(actor=None, email=Patient.objects.order_by("id")[3].email, reason=Suppression.Reason.HARD_BOUNCE)
    _assert_equal(index, purposes)
    Patient.objects.filter(pk=someone.pk).update(state="WI", birth_year=1950, last_visit=TODAY)
    _assert_equal(index, purposes)
    PatientCondition.objects.create(patient=someone, code="E11.65")
    ProgramEnrolment.objects.filter(patient=Patient.objects.order_by("id")[5]).delete()
    ProgramEnrolment.objects.create(patient=Patient.objects.order_by("id")[6], code="DPP")
    _assert_equal(index, purposes)
    newcomer = patient_make(state="IL", condition_codes=["E11"], program_codes=["DPP"], postal_code="99501")
    authorization_make(patient=newcomer, purpose=purpose)
    _assert_equal(index, purposes)
    assert index.counts(
        rules={"op": "and", "rules": [{"field": "postal_code", "in": ["99501"]}]}, purpose_id=purpose.pk, year=TODAY.year
    )["covered"] == 1
    # A patient gone (erasure cascades to their rows): no longer counted.
    leaving = patient_make(state="IL")
    _assert_equal(index, purposes)
    Patient.objects.filter(pk=leaving.pk).delete()
    _assert_equal(index, purposes)
    assert index.patients == Patient.objects.count()
    assert index.load_seconds == loaded  # all of it read from the change log, never loaded again


def test_r_send_covered_an_authorization_that_expires_is_counted_expired_without_any_write(index):
    purpose = purpose_make()
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose, signed_ago=timedelta(days=3), expires_in=timedelta(seconds=2))
    index.load()
    assert index.counts(rules=None, purpose_id=purpose.pk, year=TODAY.year)["covered"] == 1
    time.sleep(2.5)
    counts = index.counts(rules=None, purpose_id=purpose.pk, year=TODAY.year)
    assert counts["covered"] == 0 and counts["expired"] == 1
    assert counts == _sql(None, purpose.pk)


def test_a_transaction_that_commits_after_a_later_one_is_still_read(index):
    """The change log is read from the oldest transaction still running at the last read, not from the last row
    seen: `first` writes before `second` (a lower change id and xid) but commits after it, when the index has
    already read `second`'s change. Read by row id alone, `first`'s change would be lost for good."""
    purpose = purpose_make()
    one, two = patient_make(state="IL"), patient_make(state="IL")
    for patient in (one, two):
        authorization_make(patient=patient, purpose=purpose)
    index.load()
    in_wisconsin = {"op": "and", "rules": [{"field": "state", "in": ["WI"]}]}

    def covered_in_wisconsin():
        return index.counts(rules=in_wisconsin, purpose_id=purpose.pk, year=TODAY.year)["covered"]

    with count_index_module._connect() as first, count_index_module._connect() as second:
        first.execute("UPDATE consent_patient SET state = 'WI' WHERE id = %s", [one.pk])  # not committed yet
        second.execute("UPDATE consent_patient SET state = 'WI' WHERE id = %s", [two.pk])
        second.commit()
        assert covered_in_wisconsin() == 1  # second's change; first's is not committed
        first.commit()
    assert covered_in_wisconsin() == 2
    assert covered_in_wisconsin() == _sql(in_wisconsin, purpose.pk)["covered"]


def test_a_truncated_table_loads_everything_again(index):
    purpose = purpose_make()
    patient = patient_make(condition_codes=["E11"])
    authorization_make(patient=patient, purpose=purpose)
    index.load()
    loaded = index.load_seconds
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE consent_patientcondition")
    rules = {"op": "and", "rules": [{"field": "condition", "any": ["E11"]}]}
    assert index.counts(rules=rules, purpose_id=purpose.pk, year=TODAY.year) == _sql(rules, purpose.pk)
    assert index.load_seconds == loaded and index.patients == 1  # a full read in the answer's own snapshot


@pytest.fixture
def process_index(settings):
    """count_index_ready's process-wide index, fresh for the test and dropped after it."""
    settings.HIPAAMAIL_COUNT_INDEX = True
    count_index_module._index = count_index_module._index_pid = None
    yield
    if count_index_module._index is not None:
        deadline = time.monotonic() + 30
        while count_index_module._index.loading and time.monotonic() < deadline:
            time.sleep(0.05)
        if count_index_module._index._connection is not None:
            count_index_module._index._connection.close()
    count_index_module._index = count_index_module._index_pid = None


def _wait_loaded(timeout: float = 30) -> CountIndex:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        index = count_index_module._index
        if index is not None and index.loaded:
            return index
        time.sleep(0.05)
    raise AssertionError("the count index did not load")


def test_the_first_request_counts_with_sql_and_starts_the_load_then_the_index_answers(process_index, monkeypatch):
    purposes = _population()
    rules = CHECKED_RULES[2]
    expected = segment_counts(rules=rules, purpose_id=purposes[0].pk)  # SQL, while the index loads
    assert count_index_module._index is not None
    _wait_loaded()
    # From now on the index answers: SQL is not asked.
    monkeypatch.setattr(
        "campaigns.selectors.segments.coverage_standing_counts", lambda **kwargs: pytest.fail("counted with SQL")
    )
    assert segment_counts(rules=rules, purpose_id=purposes[0].pk) == expected


def test_a_failed_refresh_answers_with_sql_and_loads_again_later(process_index, monkeypatch):
    purposes = _population()
    rules = CHECKED_RULES[1]
    segment_counts(rules=rules, purpose_id=purposes[0].pk)
    index = _wait_loaded()

    def broken(cursor):
        raise psycopg.OperationalError("the connection was lost")

    monkeypatch.setattr(index, "_refresh", broken)
    assert segment_counts(rules=rules, purpose_id=purposes[0].pk).covered == _sql(rules, purposes[0].pk)["covered"]
    assert not index.loaded and index._connection is None  # nothing in memory is trusted
    with pytest.raises(CountIndexUnavailable):
        index.counts(rules=None, purpose_id=purposes[0].pk, year=TODAY.year)
    monkeypatch.undo()
    monkeypatch.setattr(count_index_module, "_RETRY_SECONDS", 0)
    segment_counts(rules=rules, purpose_id=purposes[0].pk)  # starts the load again
    assert _wait_loaded() is index


def test_off_or_on_sqlite_the_index_is_never_started(settings):
    settings.HIPAAMAIL_COUNT_INDEX = False
    count_index_module._index = count_index_module._index_pid = None
    started = threading.active_count()
    assert count_index_module.count_index_ready() is None
    assert count_index_module._index is None and threading.active_count() == started
