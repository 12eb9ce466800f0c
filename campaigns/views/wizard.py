"""The campaign wizard (issue 17, item 1): purpose -> audience -> content -> review -> submit, as marketers know it
from Mailchimp and Paubox. A draft is saved at the first step (a purpose and a name) and at each step after, so the
steps keep what was entered, and back and forward are plain links between pages.

Thin views over what the one-page editor and the segment pages use already: campaigns.services.drafts and
campaigns.services.lifecycle write (and audit), campaigns.selectors.segments counts (small counts suppressed for
marketers, as everywhere), campaigns.content decides which blocks a purpose may use, campaigns.content_preview
previews, campaigns.forms.segments and static/js/segment-builder.js build a segment inline, and
static/js/campaign-editor.js redraws the live preview.
"""
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods

from accounts.roles import is_staff_member
from campaigns import permissions
from campaigns.content import content_blocks_allowed, content_of, content_problems
from campaigns.content_preview import content_preview_context, library_item_preview
from campaigns.forms.editor import CampaignContentForm, WizardAudienceForm, WizardPurposeForm
from campaigns.forms.segments import SegmentForm
from campaigns.models import Campaign
from campaigns.permissions import count_policy_for
from campaigns.selectors import segments as segments_selectors
from campaigns.services import drafts
from campaigns.services import lifecycle as lifecycle_services
from campaigns.services.lifecycle import EDITABLE
from campaigns.services.segments import segment_save
from consent.models import Purpose

STEPS = (
    ("purpose", gettext_lazy("Purpose"), "campaigns:wizard_purpose"),
    ("audience", gettext_lazy("Audience"), "campaigns:wizard_audience"),
    ("content", gettext_lazy("Content"), "campaigns:wizard_content"),
    ("review", gettext_lazy("Review and submit"), "campaigns:wizard_review"),
)


def _access(user) -> None:
    if not is_staff_member(user):
        raise Http404


def _campaign_for_wizard(request, campaign_id: int) -> Campaign:
    """The campaign, if the wizard may change it; a journey's step does not exist here (404)."""
    _access(request.user)
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    if campaign.kind != Campaign.Kind.CAMPAIGN:
        raise Http404
    return campaign


def _not_editable(request, campaign: Campaign):
    """Submitted, scheduled, sending, sent and cancelled campaigns are not changed here: to the campaign's page."""
    messages.info(
        request,
        _("A %(status)s campaign cannot be changed. Duplicate it to start a new draft from it.")
        % {"status": campaign.get_status_display().lower()},
    )
    return redirect("campaigns:detail", campaign_id=campaign.pk)


def _steps(current: str, campaign: Campaign | None) -> list[dict]:
    keys = [key for key, _label, _url in STEPS]
    position = keys.index(current)
    steps = []
    for index, (key, label, url_name) in enumerate(STEPS):
        steps.append(
            {
                "key": key,
                "number": index + 1,
                "label": label,
                "url_name": url_name,
                "state": "current" if index == position else ("done" if index < position else "todo"),
                "reachable": campaign is not None,
            }
        )
    return steps


def _context(request, step: str, campaign: Campaign | None, **extra) -> dict:
    return {
        "campaign": campaign,
        "steps": _steps(step, campaign),
        "step": step,
        "approved_warning": campaign is not None and campaign.status == Campaign.Status.APPROVED,
        **extra,
    }


def _purpose_choices(user) -> list[dict]:
    """Each purpose with how many patients its authorizations cover now (small counts suppressed for marketers)."""
    policy = count_policy_for(user)
    choices = []
    for purpose in Purpose.objects.order_by("name"):
        counts = segments_selectors.audience_counts_shown(segment_id=None, purpose_id=purpose.pk, policy=policy)
        choices.append({"purpose": purpose, "covered": counts.get("covered")})
    return choices


# --- Step 1: purpose and name --------------------------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
def wizard_start(request):
    """Step 1 of a new campaign. Nothing is saved until it has a purpose and a name; then it is a draft."""
    _access(request.user)
    form = WizardPurposeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            campaign = drafts.campaign_draft_start(actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            messages.success(request, _("Draft saved. Now choose who it is for."))
            return redirect("campaigns:wizard_audience", campaign_id=campaign.pk)
    context = _context(request, "purpose", None, form=form, purposes=_purpose_choices(request.user))
    return render(request, "campaigns/wizard/purpose.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
def wizard_purpose(request, campaign_id: int):
    campaign = _campaign_for_wizard(request, campaign_id)
    if campaign.status not in EDITABLE:
        return _not_editable(request, campaign)
    if request.method == "POST":
        form = WizardPurposeForm(request.POST)
        if form.is_valid():
            try:
                _campaign, removed = drafts.campaign_draft_purpose_set(
                    actor=request.user, campaign_id=campaign.pk, **form.cleaned_data
                )
            except ValidationError as error:
                form.add_error(None, error.messages)
            else:
                if removed:
                    messages.warning(
                        request,
                        ngettext(
                            "%(count)s block was taken out of the content: it is not approved for this purpose.",
                            "%(count)s blocks were taken out of the content: they are not approved for this purpose.",
                            removed,
                        )
                        % {"count": removed},
                    )
                return redirect("campaigns:wizard_audience", campaign_id=campaign.pk)
    else:
        form = WizardPurposeForm(initial={"purpose": campaign.purpose_id, "name": campaign.name})
    context = _context(request, "purpose", campaign, form=form, purposes=_purpose_choices(request.user))
    return render(request, "campaigns/wizard/purpose.html", context)


# --- Step 2: audience ---------------------------------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
def wizard_audience(request, campaign_id: int):
    """Every patient or a saved segment, each with its live counts for the campaign's purpose in the picker itself;
    or a new segment made here (the segment builder's form, counts and script), saved and chosen at once."""
    campaign = _campaign_for_wizard(request, campaign_id)
    if campaign.status not in EDITABLE:
        return _not_editable(request, campaign)
    form = WizardAudienceForm()
    segment_form = SegmentForm(initial={"purpose": campaign.purpose_id})
    creating = False
    if request.method == "POST" and request.POST.get("intent") == "create_segment":
        creating = True
        segment_form = SegmentForm(request.POST)
        if segment_form.is_valid():
            try:
                segment = segment_save(
                    actor=request.user, name=segment_form.cleaned_data["name"], rules=segment_form.rules
                )
                drafts.campaign_draft_audience_set(actor=request.user, campaign_id=campaign.pk, segment=segment)
            except ValidationError as error:
                segment_form.add_error(None, error.messages)
            else:
                messages.success(
                    request, _("Segment \u201c%(name)s\u201d saved and chosen for this campaign.") % {"name": segment.name}
                )
                return redirect("campaigns:wizard_audience", campaign_id=campaign.pk)
    elif request.method == "POST":
        form = WizardAudienceForm(request.POST)
        if form.is_valid():
            try:
                drafts.campaign_draft_audience_set(
                    actor=request.user, campaign_id=campaign.pk, segment=form.cleaned_data["segment"]
                )
            except ValidationError as error:
                form.add_error(None, error.messages)
            else:
                return redirect("campaigns:wizard_content", campaign_id=campaign.pk)
    policy = count_policy_for(request.user)
    chosen = (
        request.POST.get("segment", "")
        if request.method == "POST" and not creating
        else (str(campaign.segment_id) if campaign.segment_id else WizardAudienceForm.EVERY_PATIENT)
    )
    choices = segments_selectors.audience_choice_list(purpose_id=campaign.purpose_id, policy=policy)
    for choice in choices:
        choice["value"] = str(choice["segment"].pk) if choice["segment"] else WizardAudienceForm.EVERY_PATIENT
        choice["checked"] = choice["value"] == chosen
    context = _context(
        request,
        "audience",
        campaign,
        form=form,
        choices=choices,
        exact=policy.exact,
        segment_form=segment_form,
        creating=creating,
        counts=None,
        purpose=campaign.purpose,
        errors=[],
    )
    return render(request, "campaigns/wizard/audience.html", context)


# --- Step 3: content -------------------------------------------------------------------------------------------


def _block_library(purpose_id: int) -> list[dict]:
    """The blocks the purpose may use, each with its thumbnail (the block alone, made with the synthetic patient)."""
    return [
        {"block": block, "preview": library_item_preview(block=block)}
        for block in content_blocks_allowed(purpose_id=purpose_id)
    ]


@require_http_methods(["GET", "HEAD", "POST"])
def wizard_content(request, campaign_id: int):
    """The subject, the template, the introduction and the blocks: only those approved for the campaign's purpose
    are offered (and accepted: the form and campaigns.content refuse any other), with a library of thumbnails and the
    live preview of the one-page editor."""
    campaign = _campaign_for_wizard(request, campaign_id)
    if campaign.status not in EDITABLE:
        return _not_editable(request, campaign)
    if request.method == "POST":
        form = CampaignContentForm(request.POST, purpose=campaign.purpose)
        if form.is_valid():
            data = form.cleaned_data
            try:
                drafts.campaign_draft_content_set(
                    actor=request.user,
                    campaign_id=campaign.pk,
                    subject=data["subject"],
                    body_text=data["body_text"],
                    template=data["template"],
                    blocks=data["blocks"],
                )
            except ValidationError as error:
                form.add_error(None, error.messages)
            else:
                return redirect("campaigns:wizard_review", campaign_id=campaign.pk)
    else:
        form = CampaignContentForm(initial=CampaignContentForm.initial_for(campaign), purpose=campaign.purpose)
    filled = [position for position, bound in enumerate(form.block_fields(), start=1) if bound.value()]
    context = _context(
        request,
        "content",
        campaign,
        form=form,
        library=_block_library(campaign.purpose_id),
        visible_blocks=min(len(form.block_fields()), (max(filled) if filled else 0) + 1),
        preview=content_preview_context(campaign=campaign)["preview"],
    )
    return render(request, "campaigns/wizard/content.html", context)


# --- Step 4: review and submit ----------------------------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
def wizard_review(request, campaign_id: int):
    """Everything at once before submitting: who will get it and why the others will not (counts by reason, small
    counts suppressed for marketers; no patient named), the content as sent, and what still stops its submission.
    Submitting is campaigns.services.lifecycle.campaign_submit, which checks the content again."""
    campaign = _campaign_for_wizard(request, campaign_id)
    if campaign.status not in EDITABLE:
        return _not_editable(request, campaign)
    submit_errors: list[str] = []
    if request.method == "POST":
        try:
            lifecycle_services.campaign_submit(actor=request.user, campaign_id=campaign.pk)
        except ValidationError as error:
            submit_errors = error.messages
        else:
            messages.success(
                request, _("Submitted for approval. A compliance officer other than you will review it.")
            )
            return redirect("campaigns:detail", campaign_id=campaign.pk)
    campaign.refresh_from_db()
    if campaign.status not in EDITABLE:  # it moved meanwhile (another tab)
        return _not_editable(request, campaign)
    policy = count_policy_for(request.user)
    problems = [problem.message for problem in content_problems(content_of(campaign))]
    context = _context(
        request,
        "review",
        campaign,
        counts=segments_selectors.audience_counts_shown(
            segment_id=campaign.segment_id, purpose_id=campaign.purpose_id, policy=policy
        ),
        exact=policy.exact,
        problems=problems,
        submit_errors=submit_errors,
        can_submit=campaign.status in (Campaign.Status.DRAFT, Campaign.Status.REJECTED),
        preview=content_preview_context(campaign=campaign)["preview"],
    )
    return render(request, "campaigns/wizard/review.html", context)
