"""Campaign editor pages (issue 5, items 1, 3 and 4): write a campaign and its content, preview it live with a
synthetic patient, send a test to oneself, submit. Thin views: campaigns.services, campaigns.services.lifecycle and
campaigns.services.library hold the rules (and audit); these pages only shape input and show results.

Any staff member may write a draft; compliance officers and administrators review, approve, reject and send
(marketers get a 404 there). Approving and sending ask for the second factor again.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from accounts.roles import is_staff_member, sees_patient_evidence
from campaigns import permissions
from campaigns.content import SYNTHETIC_PATIENT, CampaignContent
from campaigns.content_preview import content_preview_build, content_preview_context
from campaigns.forms.editor import CampaignForm
from campaigns.models import Campaign
from campaigns.permissions import count_policy_for
from campaigns.selectors import segments as segments_selectors
from campaigns.services import drafts
from campaigns.services import library as services_content
from campaigns.services import lifecycle as lifecycle_services
from campaigns.services.lifecycle import EDITABLE, campaign_create_draft, campaign_update
from consent.models import Purpose


def _access_editor(user) -> None:
    if not is_staff_member(user):
        raise Http404


def _visible_block_count(form: CampaignForm) -> int:
    """Block choices shown without script: those filled in, and one more."""
    filled = [position for position, bound in enumerate(form.block_fields(), start=1) if bound.value()]
    return min(len(form.block_fields()), (max(filled) if filled else 0) + 1)


def _audience_options(user, purpose_id: int) -> list[tuple[str, str]]:
    """The segment picker's options, each named with how many patients the purpose covers in it now (the wizard's
    counts, small counts suppressed for marketers): ("" for every patient, or the segment's id; its label). Segments
    past the counted ones (audience_choice_list's limit) keep their plain name, so every segment stays choosable."""
    counted = {}
    for choice in segments_selectors.audience_choice_list(purpose_id=purpose_id, policy=count_policy_for(user)):
        segment, counts = choice["segment"], choice["counts"]
        name = segment.name if segment else str(_("Every patient (no segment)"))
        if counts.get("errors"):
            label = _("%(name)s (its rules need fixing)") % {"name": name}
        else:
            label = _("%(name)s · %(covered)s would get it") % {"name": name, "covered": counts["covered"]}
        counted["" if segment is None else str(segment.pk)] = label
    options = [("", counted[""])]
    for segment in CampaignForm.base_fields["segment"].queryset.all():  # a fresh query, not the class's cache
        options.append((str(segment.pk), counted.get(str(segment.pk), segment.name)))
    return options


def _audience_labels_set(user, form: CampaignForm) -> None:
    """Name the segment choices with their counts for the purpose on the form, when one is chosen."""
    value = form["purpose"].value()
    purpose_id = int(value) if str(value or "").isdigit() else getattr(value, "pk", None)
    if purpose_id is None or not Purpose.objects.filter(pk=purpose_id).exists():
        return
    form.fields["segment"].choices = _audience_options(user, purpose_id)


@require_safe
def campaign_audience_options(request):
    """The segment picker's labels for another purpose (GET ?purpose=<id>), for the editor's script when the purpose
    changes: JSON {"options": [{"value", "label"}]}. A missing or unknown purpose is a 400, never a 500."""
    _access_editor(request.user)
    value = request.GET.get("purpose", "")
    if not value.isdigit() or not Purpose.objects.filter(pk=int(value)).exists():
        return JsonResponse({"error": _("Choose a purpose first.")}, status=400)
    options = _audience_options(request.user, int(value))
    return JsonResponse({"options": [{"value": value, "label": label} for value, label in options]})


def _editor_context(request, form: CampaignForm, campaign: Campaign | None, editable: bool) -> dict:
    _audience_labels_set(request.user, form)
    context = {
        "form": form,
        "campaign": campaign,
        "editable": editable,
        "visible_blocks": _visible_block_count(form),
        "synthetic": SYNTHETIC_PATIENT,
    }
    if campaign is not None:
        address = services_content.staff_verified_address(user=request.user)
        context |= content_preview_context(campaign=campaign)
        context |= {
            "can_submit": campaign.status in (Campaign.Status.DRAFT, Campaign.Status.REJECTED),
            "reviewer": sees_patient_evidence(request.user),
            "test_address": address.email if address else None,
        }
    return context


@require_http_methods(["GET", "HEAD", "POST"])
def campaign_new(request):
    _access_editor(request.user)
    form = CampaignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            campaign = campaign_create_draft(actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            messages.success(request, _("Draft saved. Submit it for approval when it is ready."))
            return redirect("campaigns:campaign_edit", campaign_id=campaign.pk)
    context = _editor_context(request, form, None, True)
    context["preview"] = _preview_of_form(form) if request.method == "POST" else None
    return render(request, "campaigns/editor/edit.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
def campaign_edit(request, campaign_id: int):
    _access_editor(request.user)
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    editable = campaign.status in EDITABLE
    if request.method == "POST" and editable:
        form = CampaignForm(request.POST)
        if form.is_valid():
            was_approved = campaign.status == Campaign.Status.APPROVED
            try:
                updated = campaign_update(
                    actor=request.user, campaign_id=campaign.pk, **form.cleaned_data
                )
            except ValidationError as error:
                form.add_error(None, error.messages)
            else:
                if was_approved and updated.status == Campaign.Status.DRAFT:
                    messages.warning(request, _("Saved. The edit voided the approval: submit it for approval again."))
                else:
                    messages.success(request, _("Saved."))
                return redirect("campaigns:campaign_edit", campaign_id=campaign.pk)
    else:
        form = CampaignForm(initial=CampaignForm.initial_for(campaign))
    if not editable:
        for field in form.fields.values():
            field.disabled = True
    context = _editor_context(request, form, campaign, editable)
    if request.method == "POST" and editable:
        context["preview"] = _preview_of_form(form)  # what was typed, not what is saved
    return render(request, "campaigns/editor/edit.html", context)


def _preview_of_form(form: CampaignForm):
    """A preview of the editor's current, unsaved state: the fields that are valid so far."""
    if not hasattr(form, "cleaned_data"):
        form.is_valid()
    data = form.cleaned_data
    content = CampaignContent(
        purpose=data.get("purpose") or Purpose(name=_("(no purpose chosen yet)")),
        subject=data.get("subject") or "",
        intro_text=data.get("body_text") or "",
        template=data.get("template"),
        blocks=tuple(data.get("blocks") or ()),
    )
    return content_preview_build(content=content)


@require_POST
def campaign_preview(request):
    """The live preview: the editor posts its form as it changes; the answer is the preview fragment, made with
    the synthetic patient. Blocks and templates come from the approved library only (the form's choices)."""
    _access_editor(request.user)
    return render(
        request,
        "campaigns/editor/_content_preview.html",
        {"preview": _preview_of_form(CampaignForm(request.POST)), "live": True},
    )


@require_POST
def campaign_test_send(request, campaign_id: int):
    """Send the saved content to the signed-in user's own verified address (never another), [TEST] in the
    subject, with the synthetic patient."""
    _access_editor(request.user)
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    try:
        address = services_content.campaign_test_send(actor=request.user, campaign_id=campaign.pk)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("A test of the saved version was sent to %(address)s.") % {"address": address})
    return redirect("campaigns:campaign_edit", campaign_id=campaign.pk)


@require_POST
def campaign_submit(request, campaign_id: int):
    _access_editor(request.user)
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    try:
        lifecycle_services.campaign_submit(actor=request.user, campaign_id=campaign.pk)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, _("Not submitted: %(reason)s") % {"reason": message})
    else:
        messages.success(request, _("Submitted for approval. A compliance officer other than you will review it."))
    return redirect("campaigns:campaign_edit", campaign_id=campaign.pk)


# --- Draft actions (issue 17): duplicate any campaign, delete a draft, withdraw a submission -----------------------


@require_POST
def campaign_duplicate(request, campaign_id: int):
    """A new draft with the campaign's purpose, audience and content, by the signed-in staff member; then the
    wizard's first step, to rename it."""
    _access_editor(request.user)
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    try:
        copy, left_out = drafts.campaign_duplicate(actor=request.user, campaign_id=campaign.pk)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("campaigns:detail", campaign_id=campaign.pk)
    messages.success(
        request,
        _("Copied as a new draft, \u201c%(name)s\u201d. Rename it here, then check each step.") % {"name": copy.name},
    )
    if left_out:
        messages.warning(
            request,
            ngettext(
                "%(count)s item of the content library was left out: retired since, or not for this purpose.",
                "%(count)s items of the content library were left out: retired since, or not for this purpose.",
                left_out,
            )
            % {"count": left_out},
        )
    return redirect("campaigns:wizard_purpose", campaign_id=copy.pk)


@require_POST
def campaign_delete(request, campaign_id: int):
    """Delete a draft (its author or an administrator; never anything but a draft)."""
    _access_editor(request.user)
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    try:
        drafts.campaign_draft_delete(actor=request.user, campaign_id=campaign.pk)
    except (ValidationError, PermissionDenied) as error:
        messages.error(request, _("Not deleted: %(reason)s") % {"reason": _reason(error)})
        return redirect("campaigns:detail", campaign_id=campaign.pk)
    messages.success(request, _("Draft \u201c%(name)s\u201d deleted.") % {"name": campaign.name})
    return redirect("home")


@require_POST
def campaign_withdraw(request, campaign_id: int):
    """Take a submission back before review (its author or an administrator): a draft again."""
    _access_editor(request.user)
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    try:
        drafts.campaign_withdraw(actor=request.user, campaign_id=campaign.pk)
    except (ValidationError, PermissionDenied) as error:
        messages.error(request, _("Not withdrawn: %(reason)s") % {"reason": _reason(error)})
        return redirect("campaigns:detail", campaign_id=campaign.pk)
    messages.success(request, _("Withdrawn: it is a draft again. Change it and submit it when it is ready."))
    return redirect("campaigns:wizard_review", campaign_id=campaign.pk)


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error)
