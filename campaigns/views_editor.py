"""Campaign editor and review pages (issue 5, items 1, 3 and 4). Thin views: campaigns.services and
campaigns.services_review hold the rules (and audit); these pages only shape input and show results.

Any staff member may write a draft; compliance officers and administrators review, approve, reject and send
(marketers get a 404 there). Approving and sending ask for the second factor again.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from campaigns import permissions, services, services_review
from campaigns.forms_editor import CampaignForm
from campaigns.models import Campaign
from hipaamail.roles import is_staff_member, sees_patient_evidence


def _access_editor(user) -> None:
    if not is_staff_member(user):
        raise Http404


def _initial(campaign: Campaign) -> dict:
    return {field: getattr(campaign, field) for field in ("name", "purpose", "segment", "subject", "body_text")}


@require_http_methods(["GET", "POST"])
def campaign_new(request):
    _access_editor(request.user)
    form = CampaignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            campaign = services_review.campaign_create_draft(actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            messages.success(request, "Draft saved. Submit it for approval when it is ready.")
            return redirect("campaigns:campaign_edit", campaign_id=campaign.pk)
    return render(request, "campaigns/editor/edit.html", {"form": form, "campaign": None, "editable": True})


@require_http_methods(["GET", "POST"])
def campaign_edit(request, campaign_id: int):
    _access_editor(request.user)
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    editable = campaign.status in services_review.EDITABLE
    if request.method == "POST" and editable:
        form = CampaignForm(request.POST)
        if form.is_valid():
            was_approved = campaign.status == Campaign.Status.APPROVED
            try:
                updated = services_review.campaign_update(
                    actor=request.user, campaign_id=campaign.pk, **form.cleaned_data
                )
            except ValidationError as error:
                form.add_error(None, error.messages)
            else:
                if was_approved and updated.status == Campaign.Status.DRAFT:
                    messages.warning(request, "Saved. The edit voided the approval: submit it for approval again.")
                else:
                    messages.success(request, "Saved.")
                return redirect("campaigns:campaign_edit", campaign_id=campaign.pk)
    else:
        form = CampaignForm(initial=_initial(campaign))
    if not editable:
        for field in form.fields.values():
            field.disabled = True
    context = {
        "form": form,
        "campaign": campaign,
        "editable": editable,
        "can_submit": campaign.status in (Campaign.Status.DRAFT, Campaign.Status.REJECTED),
        "reviewer": sees_patient_evidence(request.user),
    }
    return render(request, "campaigns/editor/edit.html", context)


@require_POST
def campaign_submit(request, campaign_id: int):
    _access_editor(request.user)
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    try:
        services.campaign_submit(actor=request.user, campaign_id=campaign.pk)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, "Submitted for approval. A compliance officer other than you will review it.")
    return redirect("campaigns:campaign_edit", campaign_id=campaign.pk)
