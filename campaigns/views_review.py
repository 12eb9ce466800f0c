"""Campaign review pages (issue 5, items 3 and 4): a compliance officer or administrator sees content, purpose,
segment and exact coverage, approves or rejects, and sends. Marketers get a 404 (campaigns.permissions).
Approving and sending ask for the second factor again; campaigns.services and campaigns.services_review hold
the rules and the audit."""
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from campaigns import permissions, segments, services, services_review
from campaigns.forms_review import RejectForm, SecondFactorForm
from campaigns.models import Campaign
from hipaamail.roles import sees_patient_evidence


def campaign_controls(user, campaign: Campaign) -> dict:
    """What the campaign page offers this staff member now (the views check again on use)."""
    return {"review": sees_patient_evidence(user)}


def _audience_counts(campaign: Campaign) -> dict:
    """Exact counts for the reviewer: matched, covered for the campaign's purpose now, uncovered by reason.
    Coverage comes from consent.selectors alone (through campaigns.segments for a segment)."""
    labels = dict(segments.EXCLUSION_REASONS)
    try:
        counts = segments.audience_counts(segment_id=campaign.segment_id, purpose_id=campaign.purpose_id)
    except ValidationError as error:
        return {"errors": error.messages}
    return {
        "matched": f"{counts.matched:,}",
        "covered": f"{counts.covered:,}",
        "excluded": [(reason, labels.get(reason, reason), f"{n:,}") for reason, n in counts.excluded.items() if n],
    }


def _review_page(request, campaign: Campaign, *, approve_form=None, reject_form=None, launch_form=None, status=200):
    context = {
        "campaign": campaign,
        "counts": _audience_counts(campaign),
        "is_author": campaign.created_by_id == request.user.pk,
        "approve_form": approve_form or SecondFactorForm(prefix="approve"),
        "reject_form": reject_form or RejectForm(),
        "launch_form": launch_form or SecondFactorForm(prefix="launch"),
    }
    return render(request, "campaigns/editor/review.html", context, status=status)


@require_http_methods(["GET", "POST"])
def campaign_review(request, campaign_id: int):
    campaign = permissions.access_campaign_review_by_id(request.user, campaign_id)
    if request.method == "GET":
        return _review_page(request, campaign)
    decision = request.POST.get("decision")
    if decision == "approve":
        form = SecondFactorForm(request.POST, prefix="approve")
        if form.is_valid():
            if not services_review.second_factor_reentry_check(
                user=request.user, code=form.cleaned_data["code"], action="campaign.approve", campaign_id=campaign.pk
            ):
                form.add_error("code", "That code did not work. Enter the current code from your authenticator app.")
            else:
                try:
                    services.campaign_approve(actor=request.user, campaign_id=campaign.pk)
                except PermissionDenied:
                    form.add_error(None, "You wrote this campaign, so you cannot approve it: another compliance "
                                         "officer or an administrator must.")
                    return _review_page(request, campaign, approve_form=form, status=403)
                except ValidationError as error:
                    form.add_error(None, error.messages)
                else:
                    messages.success(request, "Approved. It can be sent now.")
                    return redirect("campaigns:campaign_review", campaign_id=campaign.pk)
        return _review_page(request, campaign, approve_form=form)
    if decision == "reject":
        form = RejectForm(request.POST)
        if form.is_valid():
            try:
                services_review.campaign_reject(
                    actor=request.user, campaign_id=campaign.pk, comment=form.cleaned_data["comment"]
                )
            except ValidationError as error:
                form.add_error(None, error.messages)
            else:
                messages.success(request, "Rejected: it is back with its author. Tell them your reasons directly; "
                                          "the comment is not stored.")
                return redirect("campaigns:campaign_review", campaign_id=campaign.pk)
        return _review_page(request, campaign, reject_form=form)
    messages.error(request, "Choose approve or reject.")
    return redirect("campaigns:campaign_review", campaign_id=campaign.pk)


@require_POST
def campaign_launch_now(request, campaign_id: int):
    campaign = permissions.access_campaign_review_by_id(request.user, campaign_id)
    form = SecondFactorForm(request.POST, prefix="launch")
    if form.is_valid():
        if not services_review.second_factor_reentry_check(
            user=request.user, code=form.cleaned_data["code"], action="campaign.launch", campaign_id=campaign.pk
        ):
            form.add_error("code", "That code did not work. Enter the current code from your authenticator app.")
        else:
            try:
                services.campaign_launch(actor=request.user, campaign_id=campaign.pk)
            except ValidationError as error:
                form.add_error(None, error.messages)
            else:
                messages.success(request, "Sending started.")
                return redirect("campaigns:detail", campaign_id=campaign.pk)
    return _review_page(request, campaign, launch_form=form)
