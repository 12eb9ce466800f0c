"""The segment compiler, its validation, live counts and small-cell suppression (issue 5, item 2)."""
import random
from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Segment
from campaigns.segments import MAX_RULES, segment_patient_ids, segment_queryset, segment_rules_validate
from campaigns.selectors.segments import WITHHELD, SegmentCounts, segment_counts, segment_counts_for_marketer
from campaigns.services.segments import segment_save
from consent.models import AuthorizationDefect, Patient
from consent.services.authorizations import authorization_defect_record, authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

TODAY = date(2026, 6, 1)

# Small domains, so that random rules and random patients meet often.
POSTAL_CODES = ["62701", "62702", "62801", "60601", "53703", ""]
STATES = ["IL", "WI", "IN", ""]
SEXES = ["F", "M", "X", ""]
CODES = ["E11", "E11.9", "G47.33", "I10", "J45.20"]
PROGRAMS = ["DPP", "CPAP-RESUPPLY", "HEART_REHAB"]
VISITS = [None, date(2024, 3, 1), date(2025, 1, 1), date(2025, 7, 15), date(2026, 1, 1), date(2026, 5, 30)]


def _patients_make(count: int = 40, seed: int = 5) -> list[dict]:
    """Random patients through the real service; returns what a brute-force filter needs to know of each."""
    chooser = random.Random(seed)
    made = []
    for _ in range(count):
        attributes = {
            "birth_year": chooser.choice([None, *range(1930, 2011, 3)]),
            "sex": chooser.choice(SEXES),
            "postal_code": chooser.choice(POSTAL_CODES),
            "state": chooser.choice(STATES),
            "last_visit": chooser.choice(VISITS),
            "condition_codes": chooser.sample(CODES, chooser.randint(0, 2)),
            "program_codes": chooser.sample(PROGRAMS, chooser.randint(0, 2)),
        }
        patient = patient_make(**attributes)
        made.append({"id": patient.pk, **attributes})
    return made


# --- a brute-force evaluator, written independently of the compiler ----------------------------------------


def _matches(node: dict, patient: dict) -> bool:
    if "op" in node:
        results = [_matches(child, patient) for child in node["rules"]]
        return all(results) if node["op"] == "and" else any(results)
    if "not" in node:
        return not _matches(node["not"], patient)
    field = node["field"]
    if field == "age":
        if patient["birth_year"] is None:
            return False
        age = TODAY.year - patient["birth_year"]
        return node.get("min", 0) <= age <= node.get("max", 10**6)
    if field == "sex":
        return patient["sex"] in node["in"]
    if field == "state":
        return patient["state"] in node["in"]
    if field == "postal_code":
        if "prefix" in node:
            return patient["postal_code"] != "" and patient["postal_code"].startswith(node["prefix"])
        return patient["postal_code"] in node["in"]
    if field == "condition":
        return any(code.startswith(prefix) for code in patient["condition_codes"] for prefix in node["any"])
    if field == "program":
        return any(code in node["any"] for code in patient["program_codes"])
    if field == "last_visit":
        visit = patient["last_visit"]
        if visit is None:
            return False
        after = date.fromisoformat(node["after"]) if "after" in node else date.min
        before = date.fromisoformat(node["before"]) if "before" in node else date.max
        return after <= visit < before
    raise AssertionError(field)


# --- random rule trees ------------------------------------------------------------------------------------


def _age():
    bounds = st.tuples(st.none() | st.integers(0, 100), st.none() | st.integers(0, 100)).filter(
        lambda pair: pair != (None, None) and (None in pair or pair[0] <= pair[1])
    )
    return bounds.map(
        lambda pair: {"field": "age", **({"min": pair[0]} if pair[0] is not None else {}),
                      **({"max": pair[1]} if pair[1] is not None else {})}
    )


def _last_visit():
    day = st.sampled_from([d for d in VISITS if d] + [date(2025, 6, 1), date(2023, 1, 1)])
    bounds = st.tuples(st.none() | day, st.none() | day).filter(
        lambda pair: pair != (None, None) and (None in pair or pair[0] < pair[1])
    )
    return bounds.map(
        lambda pair: {"field": "last_visit", **({"after": pair[0].isoformat()} if pair[0] else {}),
                      **({"before": pair[1].isoformat()} if pair[1] else {})}
    )


def _non_empty(values):
    return st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True)


LEAVES = st.one_of(
    _age(),
    _non_empty(["F", "M", "X"]).map(lambda v: {"field": "sex", "in": v}),
    st.sampled_from(["6", "627", "62701", "5", "9"]).map(lambda p: {"field": "postal_code", "prefix": p}),
    _non_empty([code for code in POSTAL_CODES if code] + ["99999"]).map(lambda v: {"field": "postal_code", "in": v}),
    _non_empty(["IL", "WI", "IN", "CA"]).map(lambda v: {"field": "state", "in": v}),
    _non_empty(["E11", "E11.9", "G47", "I10", "J45", "Z99"]).map(lambda v: {"field": "condition", "any": v}),
    _non_empty([*PROGRAMS, "NONE-SUCH"]).map(lambda v: {"field": "program", "any": v}),
    _last_visit(),
)


def _group(children):
    return st.builds(
        lambda op, rules: {"op": op, "rules": rules}, st.sampled_from(["and", "or"]),
        st.lists(children, min_size=1, max_size=4),
    )


# At most three levels below the root group: always within MAX_DEPTH (4).
RULES = st.recursive(
    LEAVES, lambda children: _group(children) | children.map(lambda child: {"not": child}), max_leaves=8
).map(lambda node: node if "op" in node else {"op": "and", "rules": [node]})


def test_compiled_query_selects_exactly_what_a_brute_force_filter_selects():
    """The compiler against an independent Python filter, over random trees and random patients."""
    patients = _patients_make()
    everyone = {p["id"] for p in patients}

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rules=RULES)
    def check(rules):
        if segment_rules_validate(rules):  # the strategy can nest a negation one level too deep
            return
        expected = {p["id"] for p in patients if _matches(rules, p)}
        selected = set(segment_queryset(rules, today=TODAY).filter(id__in=everyone).values_list("id", flat=True))
        assert selected == expected, rules

    check()


def test_a_segment_is_one_query(django_assert_num_queries):
    """No per-patient query and no filtering in Python: evaluating a segment's ids is one SELECT."""
    _patients_make(count=10)
    rules = {
        "op": "or",
        "rules": [
            {"op": "and", "rules": [{"field": "age", "min": 40}, {"field": "condition", "any": ["E11", "I10"]}]},
            {"not": {"field": "state", "in": ["IL"]}},
            {"field": "last_visit", "after": "2025-01-01"},
        ],
    }
    compiled = segment_queryset(rules, today=TODAY)

    with django_assert_num_queries(1):
        ids = list(compiled.values_list("id", flat=True))

    assert len(ids) == len(set(ids))  # EXISTS, not a join: no patient twice


def test_condition_code_is_a_prefix_match():
    diabetic = patient_make(condition_codes=["E11.9"])
    apnea = patient_make(condition_codes=["G47.33"])
    patient_make(condition_codes=["I10"])

    selected = set(segment_queryset({"op": "and", "rules": [{"field": "condition", "any": ["E11", "G47.33"]}]}))

    assert {diabetic, apnea} <= selected
    assert all(p.pk in (diabetic.pk, apnea.pk) for p in selected)


def test_age_counts_from_birth_year_and_both_bounds_are_inclusive():
    at_65 = patient_make(birth_year=1961)
    at_80 = patient_make(birth_year=1946)
    at_81 = patient_make(birth_year=1945)
    unknown = patient_make(birth_year=None)

    selected = set(segment_queryset({"op": "and", "rules": [{"field": "age", "min": 65, "max": 80}]}, today=TODAY))

    assert at_65 in selected and at_80 in selected
    assert at_81 not in selected and unknown not in selected


# --- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"op": "and", "rules": [{"field": "income", "in": ["high"]}]}, "unknown field 'income'"),
        ({"op": "and", "rules": []}, "The main group is empty"),
        ({"op": "xor", "rules": [{"field": "sex", "in": ["F"]}]}, "must be \u201cand\u201d or \u201cor\u201d"),
        ({"op": "and", "rules": [{"field": "age"}]}, "needs a lowest age, a highest age, or both"),
        ({"op": "and", "rules": [{"field": "age", "min": 80, "max": 65}]}, "lowest age is above the highest"),
        ({"op": "and", "rules": [{"field": "age", "min": "old"}]}, "whole numbers from 0 to 130"),
        ({"op": "and", "rules": [{"field": "sex", "in": ["female"]}]}, "sex must be F, M or X"),
        ({"op": "and", "rules": [{"field": "state", "in": ["Illinois"]}]}, "not a valid two-letter state code"),
        ({"op": "and", "rules": [{"field": "postal_code", "prefix": "6", "in": ["62701"]}]}, "not both"),
        ({"op": "and", "rules": [{"field": "condition", "any": ["e11; drop"]}]}, "not a valid condition code"),
        ({"op": "and", "rules": [{"field": "last_visit", "after": "yesterday"}]}, "YYYY-MM-DD"),
        (
            {"op": "and", "rules": [{"field": "last_visit", "after": "2026-01-01", "before": "2025-01-01"}]},
            "first date must be before the end date",
        ),
        ({"op": "and", "rules": [{"field": "sex", "in": ["F"], "extra": 1}]}, "does not take extra"),
        ({"field": "sex", "in": ["F"]}, "must be a group"),
        ({"op": "and", "rules": [{"not": {"not": {"op": "or", "rules": [{"not": {"field": "sex", "in": ["F"]}}]}}}]},
         "nested too deep"),
        ({"op": "and", "rules": [{"field": "sex", "in": ["F"]}] * (MAX_RULES + 1)}, "at most 50 rules"),
    ],
)
def test_invalid_rules_are_refused_in_plain_words(rules, message):
    errors = segment_rules_validate(rules)

    assert any(message in error for error in errors), errors
    with pytest.raises(ValidationError):
        segment_queryset(rules)


def test_errors_say_where_the_rule_is():
    rules = {"op": "and", "rules": [{"field": "sex", "in": ["F"]}, {"op": "or", "rules": [{"field": "age"}]}]}

    assert segment_rules_validate(rules) == [
        "Rule 1 of rule 2 of the main group: an age rule needs a lowest age, a highest age, or both."
    ]


def test_four_levels_are_allowed():
    rules = {"op": "and", "rules": [{"op": "or", "rules": [{"not": {"field": "sex", "in": ["F"]}}]}]}

    assert segment_rules_validate(rules) == []


# --- saving -----------------------------------------------------------------------------------------------


def test_saving_a_segment_is_audited_with_ids_and_counts_only():
    """R-NO-PHI-LEAK: the audit event holds no rule values (a rule tree can name conditions)."""
    marketer = staff_make(role="marketer")
    rules = {"op": "and", "rules": [{"field": "condition", "any": ["G47.33"]}, {"field": "state", "in": ["IL"]}]}

    segment = segment_save(actor=marketer, name="Sleep apnea, Illinois", rules=rules)
    segment_save(actor=marketer, segment_id=segment.pk, name="Sleep apnea, IL", rules=rules)

    segment.refresh_from_db()
    assert (segment.name, segment.rules, segment.created_by) == ("Sleep apnea, IL", rules, marketer)
    events = list(AuditEvent.objects.filter(action="segment.saved").order_by("id"))
    assert [(e.object_id, e.details) for e in events] == [
        (str(segment.pk), {"created": True, "rule_count": 2}),
        (str(segment.pk), {"created": False, "rule_count": 2}),
    ]
    assert "G47" not in str([e.details for e in events])


def test_saving_invalid_rules_raises_and_saves_nothing():
    with pytest.raises(ValidationError) as raised:
        segment_save(actor=staff_make(), name="Bad", rules={"op": "and", "rules": []})

    assert "rules" in raised.value.error_dict
    assert not Segment.objects.exists()
    assert not AuditEvent.objects.filter(action="segment.saved").exists()


def test_campaign_audience_ids_come_from_the_segment_or_everyone():
    older = patient_make(birth_year=1940)
    younger = patient_make(birth_year=2000)
    segment = segment_save(
        actor=staff_make(), name="Over 60", rules={"op": "and", "rules": [{"field": "age", "min": 60}]}
    )

    in_segment = set(Patient.objects.filter(id__in=segment_patient_ids(segment_id=segment.pk)))
    everyone = set(Patient.objects.filter(id__in=segment_patient_ids(segment_id=None)))

    assert older in in_segment and younger not in in_segment
    assert {older, younger} <= everyone


# --- live counts ------------------------------------------------------------------------------------------


def test_counts_split_the_uncovered_by_reason_using_the_predicate():
    """R-SEND-COVERED (advisory count): covered is decided by consent.selectors; each gap has its reason."""
    purpose, other = purpose_make(), purpose_make()
    rules = {"op": "and", "rules": [{"field": "state", "in": ["IL"]}]}
    for _ in range(3):
        authorization_make(patient=patient_make(state="IL"), purpose=purpose)
    authorization_make(patient=patient_make(state="IL"), purpose=other)
    authorization_make(
        patient=patient_make(state="IL"), purpose=purpose, signed_ago=timedelta(days=30), expires_in=-timedelta(days=1)
    )
    revoked = patient_make(state="IL")
    authorization_make(patient=revoked, purpose=purpose)
    authorization_revoke(actor=None, patient_id=revoked.pk, purpose_id=purpose.pk, channel="portal")
    defective = authorization_make(patient=patient_make(state="IL"), purpose=purpose)
    authorization_defect_record(
        actor=None, authorization_id=defective.pk, reason=AuthorizationDefect.Reason.COMPOUND
    )
    patient_make(state="IL")
    authorization_make(patient=patient_make(state="WI"), purpose=purpose)  # outside the segment

    counts = segment_counts(rules=rules, purpose_id=purpose.pk)

    assert (counts.matched, counts.covered) == (8, 3)
    assert {reason: n for reason, n in counts.excluded.items() if n} == {
        "no_authorization": 1,
        "wrong_purpose": 1,
        "expired": 1,
        "revoked": 1,
        "defect_compound": 1,
    }
    assert counts.matched == counts.covered + sum(counts.excluded.values())


def _marketer_view(matched, covered, **excluded):
    reasons = {"no_authorization": 0, "wrong_purpose": 0, "revoked": 0, "expired": 0} | excluded
    return segment_counts_for_marketer(SegmentCounts(matched=matched, covered=covered, excluded=reasons))


def test_r_small_cell_counts_from_1_to_10_read_fewer_than_11():
    """R-SMALL-CELL: a count from 1 to 10 reads "fewer than 11"; 0 and 11 or more are shown."""
    shown = _marketer_view(7, 0, no_authorization=7)

    assert shown.matched == "fewer than 11"
    assert shown.covered == "0"
    assert {r: n for r, _, n in shown.excluded}["no_authorization"] == "fewer than 11"


def test_r_small_cell_a_small_exclusion_withholds_the_total_so_it_cannot_be_subtracted_back():
    """R-SMALL-CELL complementary suppression: with 503 matched, 500 covered and 3 revoked, showing 503 and
    500 would give the 3 back; the total is withheld."""
    shown = _marketer_view(503, 500, revoked=3)

    assert shown.matched == WITHHELD
    assert shown.covered == "500"
    assert {r: n for r, _, n in shown.excluded}["revoked"] == "fewer than 11"
    assert shown.complementary


def test_r_small_cell_a_small_covered_count_also_withholds_the_total():
    shown = _marketer_view(40, 4, no_authorization=36)

    assert (shown.matched, shown.covered) == (WITHHELD, "fewer than 11")


def test_r_small_cell_no_suppression_needed_shows_every_count():
    shown = _marketer_view(1250, 1200, no_authorization=38, wrong_purpose=12)

    assert (shown.matched, shown.covered, shown.complementary) == ("1,250", "1,200", False)
    assert [n for _, _, n in shown.excluded] == ["38", "12", "0", "0"]


@given(
    covered=st.integers(0, 40),
    parts=st.lists(st.integers(0, 40), min_size=1, max_size=6),
)
@settings(max_examples=300, deadline=None)
def test_r_small_cell_no_suppressed_cell_can_be_derived_from_the_screen(covered, parts):
    """R-SMALL-CELL: for any counts, the exact value of a cell reading "fewer than 11" is not determined
    by what the screen shows: at least two values of it are consistent with every shown number."""
    reasons = {f"reason_{i}": n for i, n in enumerate(parts)}
    shown = segment_counts_for_marketer(SegmentCounts(matched=covered + sum(parts), covered=covered, excluded=reasons))
    cells = [shown.covered] + [n for _, _, n in shown.excluded]
    suppressed = [i for i, cell in enumerate(cells) if cell == "fewer than 11"]
    if not suppressed:
        return
    # What the screen allows: each suppressed cell 1..10, each shown cell its number; a withheld total
    # is at least 11; a shown total is exact; a total reading "fewer than 11" is 1..10.
    shown_sum = sum(int(cell.replace(",", "")) for cell in cells if cell != "fewer than 11")
    if shown.matched == WITHHELD:
        total_range = range(11, 10**6)
    elif shown.matched == "fewer than 11":
        total_range = range(1, 11)
    else:
        total_range = range(int(shown.matched.replace(",", "")), int(shown.matched.replace(",", "")) + 1)
    others = len(suppressed) - 1
    # The values the first suppressed cell can take, given the others may be anything from 1 to 10.
    possible = {
        value
        for value in range(1, 11)
        if any(shown_sum + value + rest in total_range for rest in range(others, 10 * others + 1))
    }
    assert len(possible) >= 2, (covered, parts, shown)


def test_program_rule_selects_patients_enrolled_in_any_of_the_programs():
    """Program enrolment (issue 5, item 2): exact program codes, enrolled now; the NOT of it keeps the others."""
    in_dpp = patient_make(program_codes=["DPP"])
    in_both = patient_make(program_codes=["dpp", "CPAP-RESUPPLY"])
    in_neither = patient_make()
    patient_make(program_codes=["HEART_REHAB"])

    selected = set(segment_queryset({"op": "and", "rules": [{"field": "program", "any": ["DPP"]}]}))
    not_selected = set(segment_queryset({"op": "and", "rules": [{"not": {"field": "program", "any": ["DPP"]}}]}))

    assert {p.pk for p in selected} == {in_dpp.pk, in_both.pk}
    assert in_neither.pk in {p.pk for p in not_selected} and in_dpp.pk not in {p.pk for p in not_selected}


def test_program_rule_refuses_a_code_that_is_not_a_program_code():
    rules = {"op": "and", "rules": [{"field": "program", "any": ["DPP; drop"]}]}

    assert any("not a valid program code" in error for error in segment_rules_validate(rules))
    with pytest.raises(ValidationError):
        segment_queryset(rules)
