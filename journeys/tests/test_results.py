"""A journey's results (journeys.selectors.results and its page): per step, exact for compliance officers, small cells
suppressed for marketers so that no count on the screen gives a hidden one back (R-SMALL-CELL), conversion against
the control group, the view audited with ids only."""
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from campaigns.sending.dispatch import delivery_dispatch_batch
from consent.services.events import patient_event_record
from consent.tests.factories import authorization_make, patient_make
from journeys.engine.intake import events_route
from journeys.engine.steps import journey_steps_advance
from journeys.models import Enrolment, JourneyStep, JourneyVersion, StepKind
from journeys.selectors import results
from journeys.selectors.flow import journey_step_list
from journeys.tests.factories import journey_live_make, journey_purpose_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def fast(settings):
    settings.HIPAAMAIL_JOURNEY_MINUTE_SECONDS = 0.00005
    settings.HIPAAMAIL_QUIET_HOURS = ""
    return settings


def _run(*, wait=True):
    for _ in range(30):
        events_route()
        _, campaigns = journey_steps_advance()
        for campaign_id in campaigns:
            while delivery_dispatch_batch(campaign_id=campaign_id):
                pass
        due = Enrolment.objects.filter(status="active").order_by("due_at").values_list("due_at", flat=True).first()
        if due is None or not wait:
            return
        while timezone.now() <= due:
            pass


def _journey_run(*, covered: int, uncovered: int, wait=True):
    purpose = journey_purpose_make()
    journey = journey_live_make(purpose=purpose)
    occurred = timezone.now() - timedelta(minutes=1)
    for n in range(covered + uncovered):
        patient = patient_make()
        if n < covered:
            authorization_make(patient=patient, purpose=purpose)
        patient_event_record(source="ehr", source_event_id=f"e{n}", patient_id=patient.pk,
                             type="equipment.delivered", occurred_at=occurred, attributes={"equipment_type": "CPAP"})
    _run(wait=wait)
    return journey


def _results(journey, *, exact):
    return results.journey_results(
        journey_id=journey.pk,
        steps_of=lambda version: journey_step_list(version_id=version.pk),
        exact=exact,
        labels_of=lambda version, steps: {step.position: f"step {step.position}" for step in steps},
    )


def _texts(version_results) -> dict:
    out = {"treated": version_results.treated.text, "completed": version_results.completed.text}
    for row in version_results.steps:
        out[f"{row.position}.entered"] = row.entered.text
        out[f"{row.position}.here"] = row.here.text
        for figure in [*row.figures, *row.exits]:
            out[f"{row.position}.{figure.key}"] = figure.cell.text
    return out


def test_compliance_officers_read_exact_counts_per_step(fast):
    journey = _journey_run(covered=14, uncovered=3)

    [version] = _results(journey, exact=True)

    assert _texts(version) == {
        "treated": "17", "completed": "14",
        "1.entered": "17", "1.sent": "14", "1.blocked_no_authorization": "3", "1.exit_not_covered": "3", "1.here": "0",
        "2.entered": "14", "2.here": "0",
        "3.entered": "14", "3.sent": "14", "3.here": "0",
    }
    assert version.steps[0].figures[0].rate == "82.4%"


def test_marketers_read_small_cells_as_fewer_than_11_and_no_total_gives_them_back(fast):
    journey = _journey_run(covered=14, uncovered=3)

    [version] = _results(journey, exact=False)

    texts = _texts(version)
    assert texts["1.blocked_no_authorization"] == texts["1.exit_not_covered"] == "fewer than 11"
    # 17 entered and 14 sent would give the 3 blocked back: what entered the first step is shown as a band.
    assert texts["1.entered"] == texts["treated"] == "10 to 19"
    assert texts["1.sent"] == "14" and texts["2.entered"] == "14"
    assert version.steps[0].figures[0].rate == ""  # a rate only when both its numbers are exact


def test_a_journey_with_only_large_counts_is_exact_for_marketers(fast):
    journey = _journey_run(covered=12, uncovered=0)

    [marketer] = _results(journey, exact=False)
    [officer] = _results(journey, exact=True)

    assert _texts(marketer) == _texts(officer)


def _step(position, kind, **fields):
    return JourneyStep(position=position, kind=kind, **fields)


def _counts(step_counts, **totals) -> results.VersionCounts:
    version = JourneyVersion(number=1, holdout_percent=totals.pop("holdout", 0),
                             conversion_event_type=totals.pop("goal", ""))
    return results.VersionCounts(version=version, steps=step_counts, **totals)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    entered=st.integers(0, 60),
    blocked=st.integers(0, 15),
    capped=st.integers(0, 15),
    held=st.integers(0, 15),
    here=st.integers(0, 15),
    yes=st.integers(0, 40),
    converted=st.integers(0, 30),
    control=st.integers(0, 30),
    control_converted=st.integers(0, 30),
)
def test_no_hidden_count_can_be_worked_out_from_those_shown(
    entered, blocked, capped, held, here, yes, converted, control, control_converted
):
    """Send (some blocked, some capped and going on), branch (yes -> 4, no -> 3), send (then the end), exit; random counts that
    add up. Whatever they are, the suppressed sheet pins no count from 1 to 10 that it hides."""
    blocked = min(blocked, entered)
    capped = min(capped, entered - blocked)
    sent = entered - blocked - capped
    at_branch = sent + capped
    here = min(here, at_branch)
    yes = min(yes, at_branch - here)
    no = at_branch - here - yes
    steps = [
        results.StepCounts(step=_step(1, StepKind.SEND), entered=entered, sent=sent,
                           blocked={k: v for k, v in {"no_authorization": blocked, "frequency_cap": capped}.items() if v},
                           held=min(held, entered), exited={"not_covered": blocked} if blocked else {}),
        results.StepCounts(step=_step(2, StepKind.BRANCH, yes_position=4), entered=at_branch, branch_yes=yes,
                           branch_no=no, here=here),
        results.StepCounts(step=_step(3, StepKind.SEND, next_position=5), entered=no, sent=no),
        results.StepCounts(step=_step(4, StepKind.EXIT), entered=yes, exited={"exit_step": yes} if yes else {}),
    ]
    counts = _counts(steps, treated=entered, control=control, converted_treated=min(converted, entered),
                     converted_control=min(control_converted, control), completed=no)

    sheet = results._sheet(counts, exact=False)

    assert sheet._leaks() == set()
    for key, cell in sheet.cells.items():
        if cell is not None and 1 <= sheet.true[key] <= 10:
            assert cell.exact is None  # every small count is hidden
        if cell is not None and cell.exact is None:
            assert cell.low <= sheet.true[key] <= cell.high  # a range that tells the truth


def test_conversion_against_the_control_group():
    steps = [results.StepCounts(step=_step(1, StepKind.SEND), entered=200, sent=200)]
    counts = _counts(steps, treated=200, control=50, converted_treated=60, converted_control=5, completed=200,
                     holdout=20, goal="appointment.booked")

    officer = results.version_results(counts, exact=True, labels={1: "Send"})
    marketer = results.version_results(counts, exact=False, labels={1: "Send"})

    assert (officer.rate_treated, officer.rate_control) == ("30.0%", "10.0%")
    assert officer.has_control
    assert marketer.converted_control.text == "fewer than 11" and marketer.rate_control == ""
    assert marketer.rate_treated == "30.0%"


# --- The page ----------------------------------------------------------------------------------------------


def test_results_page_is_exact_for_officers_suppressed_for_marketers_and_audited(verified_client, fast):
    journey = _journey_run(covered=14, uncovered=3)

    officer = verified_client.sign_in(role="compliance officer")
    exact = verified_client.get(f"/journeys/{journey.pk}/results/").content.decode()
    marketer = verified_client.sign_in(role="marketer")
    suppressed = verified_client.get(f"/journeys/{journey.pk}/results/").content.decode()

    assert 'data-count="blocked_no_authorization"><span>Blocked: no authorization</span><span class="num">3</span>' in exact
    assert "fewer than 11" not in exact
    assert 'data-count="blocked_no_authorization"><span>Blocked: no authorization</span><span class="num">fewer than 11</span>' in suppressed
    assert '<svg viewBox=' in suppressed  # the funnel, drawn on the server
    events = AuditEvent.objects.filter(action="journey.results_viewed").order_by("id")
    assert [(e.actor_id, e.object_id, e.details) for e in events] == [
        (officer.pk, str(journey.pk), {"exact": True, "versions": [1]}),
        (marketer.pk, str(journey.pk), {"exact": False, "versions": [1]}),
    ]


def test_results_page_of_a_journey_nobody_entered(verified_client):
    verified_client.sign_in(role="marketer")
    journey = journey_live_make(purpose=journey_purpose_make())

    response = verified_client.get(f"/journeys/{journey.pk}/results/")

    assert response.status_code == 200 and "No patient has entered this journey yet." in response.content.decode()


def test_running_counts_on_the_list_are_suppressed_for_marketers(verified_client, settings):
    settings.HIPAAMAIL_JOURNEY_MINUTE_SECONDS = 60  # the wait lasts: they stay in the journey
    settings.HIPAAMAIL_QUIET_HOURS = ""
    journey = _journey_run(covered=3, uncovered=0, wait=False)
    assert Enrolment.objects.filter(journey=journey, status="active").count() == 3

    verified_client.sign_in(role="marketer")
    marketer = verified_client.get("/journeys/").content.decode()
    verified_client.sign_in(role="compliance officer")
    officer = verified_client.get("/journeys/").content.decode()

    assert '<td class="num" data-running>fewer than 11</td>' in marketer
    assert '<td class="num" data-running>3</td>' in officer
