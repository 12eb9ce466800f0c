"""The journey list and a journey's page (issue 14, item 6): status, the flow of the live version and of the version
being written or reviewed, the versions with their authors and approvers, and the actions each viewer may take:
submit (the version's author, or any staff member who writes journeys), pause, resume and stop (compliance officers
and administrators). Every action is a POST through journeys.services.journeys, which checks and audits."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from campaigns.permissions import count_policy_for
from journeys import permissions
from journeys.forms.review import StopForm
from journeys.models import Journey, JourneyVersion
from journeys.selectors.flow import journey_open_versions, journey_version_list
from journeys.selectors.journeys import journey_list, journey_review_list
from journeys.selectors.results import journey_running_counts
from journeys.services import journeys as services
from journeys.views.flow import version_flow


@require_safe
def journey_list_page(request):
    permissions.access_journeys(request.user)
    journeys = list(journey_list())
    policy = count_policy_for(request.user)
    running = journey_running_counts(journey_ids=[journey.pk for journey in journeys])
    open_versions = journey_open_versions(journey_ids=[journey.pk for journey in journeys])
    rows = [
        {
            "journey": journey,
            "running": policy.count(running.get(journey.pk, 0)),
            "open_version": open_versions.get(journey.pk),
        }
        for journey in journeys
    ]
    review = list(journey_review_list()) if permissions.may_review_journey(request.user) else None
    return render(request, "journeys/list.html", {"rows": rows, "review": review, "exact": policy.exact})


def _detail_page(request, journey: Journey, *, stop_form=None, status=200):
    open_version = services.journey_version_open(journey)
    live = journey.live_version
    versions = list(journey_version_list(journey_id=journey.pk))
    control = permissions.may_control_journey(request.user)
    rejected = open_version if open_version and open_version.status == JourneyVersion.Status.REJECTED else None
    context = {
        "journey": journey,
        "live_flow": version_flow(live, purpose_name=journey.purpose.name) if live else None,
        "open_flow": version_flow(open_version, purpose_name=journey.purpose.name) if open_version else None,
        "open_version": open_version,
        "rejected": rejected,
        "is_open_author": open_version is not None and open_version.created_by_id == request.user.pk,
        "versions": versions,
        "can_edit": journey.status != Journey.Status.STOPPED
        and not (open_version and open_version.status == JourneyVersion.Status.SUBMITTED),
        "can_submit": open_version is not None
        and open_version.status in (JourneyVersion.Status.DRAFT, JourneyVersion.Status.REJECTED)
        and journey.status != Journey.Status.STOPPED,
        "can_review": permissions.may_review_journey(request.user)
        and open_version is not None
        and open_version.status == JourneyVersion.Status.SUBMITTED,
        "can_pause": control and journey.status == Journey.Status.ACTIVE,
        "can_resume": control and journey.status == Journey.Status.PAUSED,
        "can_stop": control and journey.status != Journey.Status.STOPPED,
        "has_results": any(v.status in (JourneyVersion.Status.APPROVED, JourneyVersion.Status.SUPERSEDED)
                           for v in versions),
        "stop_form": stop_form or StopForm(),
    }
    return render(request, "journeys/detail.html", context, status=status)


@require_safe
def journey_detail(request, journey_id: int):
    journey = permissions.access_journey_by_id(request.user, journey_id)
    return _detail_page(request, journey)


def _errors(request, error: ValidationError, framing: str = "%(problem)s") -> None:
    """Each of the service's problems as an error message, within `framing` (a translated "…%(problem)s…")."""
    for message in error.messages:
        messages.error(request, framing % {"problem": message})


@require_POST
def journey_submit(request, journey_id: int):
    journey = permissions.access_journey_by_id(request.user, journey_id)
    try:
        services.journey_submit(actor=request.user, journey_id=journey.pk)
    except ValidationError as error:
        _errors(request, error, _("Not submitted: %(problem)s"))
    else:
        messages.success(request, _("Submitted for review. A compliance officer other than you will review it."))
    return redirect("journeys:detail", journey_id=journey.pk)


def _control(request, journey_id: int, service, done: str):
    journey = permissions.access_journey_control_by_id(request.user, journey_id)
    try:
        service(actor=request.user, journey_id=journey.pk)
    except PermissionDenied as error:
        messages.error(request, str(error) or _("Only a compliance officer or an administrator may do that."))
    except ValidationError as error:
        _errors(request, error)
    else:
        messages.success(request, done)
    return redirect("journeys:detail", journey_id=journey.pk)


@require_POST
def journey_pause(request, journey_id: int):
    return _control(
        request, journey_id, services.journey_pause,
        _("Paused. No patient enters, no step runs and no message is handed to the mail server until you resume."),
    )


@require_POST
def journey_resume(request, journey_id: int):
    return _control(
        request, journey_id, services.journey_resume,
        _("Resumed. Steps that came due meanwhile run now (quiet hours still apply)."),
    )


@require_POST
def journey_stop(request, journey_id: int):
    journey = permissions.access_journey_control_by_id(request.user, journey_id)
    form = StopForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, journey, stop_form=form, status=400)
    return _control(
        request, journey_id, services.journey_stop,
        _("Stopped for good. Running enrolments ended and messages not yet sent will not be sent."),
    )
