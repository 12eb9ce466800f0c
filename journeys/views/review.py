"""A journey's review (issue 14, items 3 and 6): compliance officers and administrators only (anyone else gets a 404).
The submitted version's trigger and flow in words, each message as the synthetic patient would receive it (made by
the campaign review's own code, campaigns.content_preview), then approve (with the second factor again, R-SEC-MFA)
or reject with a comment. The author of the version can never approve it: the service refuses and audits, and the
page says so."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from accounts import reentry
from audit import actions
from campaigns.content import content_of
from campaigns.content_preview import content_preview_build
from journeys import permissions
from journeys.forms.review import RejectForm, SecondFactorForm
from journeys.models import Journey, JourneyVersion, StepKind
from journeys.services.journeys import journey_approve, journey_reject
from journeys.views.flow import version_flow

AUTHOR_REFUSAL = gettext_lazy(
    "You wrote this version of the journey, so you cannot approve it: another compliance officer or an "
    "administrator must."
)


def _submitted(journey: Journey) -> JourneyVersion | None:
    return journey.versions.select_related("created_by", "segment").filter(
        status=JourneyVersion.Status.SUBMITTED
    ).first()


def _review_page(request, journey: Journey, *, approve_form=None, reject_form=None, status=200):
    version = _submitted(journey)
    flow = version_flow(version, purpose_name=journey.purpose.name) if version else None
    messages_ = []
    if flow is not None:
        boxes = {box.position: box for box in flow.boxes}
        for step in flow.steps:
            if step.kind == StepKind.SEND and step.campaign_id:
                messages_.append({
                    "position": step.position,
                    "words": boxes[step.position].text,
                    "title": _("Step %(position)s: email preview (HTML part)") % {"position": step.position},
                    "preview": content_preview_build(content=content_of(step.campaign)),
                })
    context = {
        "journey": journey,
        "version": version,
        "flow": flow,
        "step_messages": messages_,
        "is_author": version is not None and version.created_by_id == request.user.pk,
        "approve_form": approve_form or SecondFactorForm(prefix="approve"),
        "reject_form": reject_form or RejectForm(),
    }
    return render(request, "journeys/review.html", context, status=status)


def _approve(request, journey: Journey):
    form = SecondFactorForm(request.POST, prefix="approve")
    # Within the session's step-up grace (accounts.reentry, ADR 0024) no code is needed, as on a campaign's review.
    if not reentry.form_valid_within_grace(form, session=request.session, user=request.user):
        return _review_page(request, journey, approve_form=form)
    passed = reentry.second_factor_reentry(
        user=request.user,
        session=request.session,
        code=form.cleaned_data["code"],
        passkey_stepup=form.cleaned_data["passkey_stepup"],
        object_type="journey",
        object_id=journey.pk,
        details={"for": actions.STEP_UP_JOURNEY_APPROVE},
    )
    if not passed:
        form.add_error("code", passed.refusal)
        return _review_page(request, journey, approve_form=form)
    try:
        version = journey_approve(actor=request.user, journey_id=journey.pk)
    except PermissionDenied:
        form.add_error(None, AUTHOR_REFUSAL)
        return _review_page(request, journey, approve_form=form, status=403)
    except ValidationError as error:
        form.add_error(None, error.messages)
        return _review_page(request, journey, approve_form=form)
    approved = _("Approved: version %(number)s is live. New patients enter it from now on.")
    messages.success(request, approved % {"number": version.number})
    return redirect("journeys:detail", journey_id=journey.pk)


def _reject(request, journey: Journey):
    form = RejectForm(request.POST)
    if form.is_valid():
        try:
            journey_reject(actor=request.user, journey_id=journey.pk, comment=form.cleaned_data["comment"])
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            messages.success(request, _("Rejected: it is back with its author, who sees your comment on the "
                                        "journey's page."))
            return redirect("journeys:detail", journey_id=journey.pk)
    return _review_page(request, journey, reject_form=form)


@require_http_methods(["GET", "HEAD", "POST"])
def journey_review(request, journey_id: int):
    journey = permissions.access_journey_review_by_id(request.user, journey_id)
    if request.method in ("GET", "HEAD"):
        return _review_page(request, journey)
    decision = request.POST.get("decision")
    if decision == "approve":
        return _approve(request, journey)
    if decision == "reject":
        return _reject(request, journey)
    messages.error(request, _("Choose approve or reject."))
    return redirect("journeys:review", journey_id=journey.pk)
