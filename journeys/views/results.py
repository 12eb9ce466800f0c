"""A journey's results (issue 14, item 6): per step of each version that has enrolments, in aggregate, with a funnel
chart drawn on the server (campaigns.results_chart). Every staff role may read it: compliance officers and
administrators exact numbers, everyone else with small cells suppressed (campaigns.permissions.count_policy_for;
journeys.selectors.results). Each view is audited with ids and codes only."""
from __future__ import annotations

from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from audit import actions
from audit.services import audit_record
from campaigns.permissions import count_policy_for
from campaigns.results_chart import funnel_chart
from journeys import permissions
from journeys.selectors.flow import journey_step_list
from journeys.selectors.results import journey_results
from journeys.views.flow import step_words, version_flow


def _labels(version, steps) -> dict[int, str]:
    return {step.position: step_words(step, count=len(steps)).text for step in steps}


@require_safe
def journey_results_page(request, journey_id: int):
    journey = permissions.access_journey_by_id(request.user, journey_id)
    exact = count_policy_for(request.user).exact
    results = journey_results(
        journey_id=journey.pk,
        steps_of=lambda version: journey_step_list(version_id=version.pk),
        exact=exact,
        labels_of=_labels,
    )
    sections = []
    for result in results:
        flow = version_flow(result.version, purpose_name=journey.purpose.name)
        chart = funnel_chart(
            id=f"funnel-v{result.version.number}",
            title=_("Version %(number)s: how far patients got") % {"number": result.version.number},
            intro=_("Patients who entered the journey, then who entered each step."),
            rows=result.funnel,
        )
        boxes = {box.position: box for box in flow.boxes}
        sections.append({"result": result, "flow": flow, "chart": chart,
                         "steps": [(boxes.get(row.position), row) for row in result.steps]})
    audit_record(
        actor=request.user,
        action=actions.JOURNEY_RESULTS_VIEWED,
        object_type="journey",
        object_id=journey.pk,
        details={"exact": exact, "versions": [result.version.number for result in results]},
    )
    return render(request, "journeys/results.html", {"journey": journey, "sections": sections, "exact": exact})
