"""Campaign review and sending pages (issue 5, items 3 and 4; issue 17, item 2): a compliance officer or
administrator finds what waits in the "needs your review" queue, sees content, purpose, segment and exact coverage,
approves or rejects with a comment, approves and sends at once, sends now or schedules, and pauses, resumes or
cancels. Marketers get a 404 here and see the status (and a rejection's comment) on the campaign page.
Approving, sending, scheduling and cancelling ask for the second factor again (accounts.reentry, with its short
grace: one code for approving, then sending); campaigns.services.lifecycle and campaigns.services.launch hold the
rules and the audit."""
import zoneinfo
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from accounts import reentry
from accounts.roles import sees_patient_evidence
from audit import actions
from campaigns import permissions
from campaigns.forms.review import RejectForm, ScheduleForm, SecondFactorForm
from campaigns.models import Campaign
from campaigns.scheduling import schedule_default_local, schedule_entered_display, schedule_relative
from campaigns.selectors import progress as progress_selectors
from campaigns.selectors.segments import EXCLUSION_REASONS, audience_counts
from campaigns.services import lifecycle as lifecycle_services
from campaigns.services.launch import CampaignAlreadyLaunched, campaign_launch
from campaigns.services.lifecycle import CANCELLABLE, EDITABLE, campaign_approve, campaign_reject

AUTHOR_REFUSAL = (
    "You wrote this campaign, so you cannot approve it: another compliance officer or an administrator must."
)

_APPROVAL_STANDS = {
    Campaign.Status.APPROVED,
    Campaign.Status.SCHEDULED,
    Campaign.Status.SENDING,
    Campaign.Status.PAUSED,
    Campaign.Status.SENT,
    Campaign.Status.CANCELLED,
}


def campaign_controls(user, campaign: Campaign) -> dict:
    """What the campaign page shows this staff member about the campaign's review and schedule, and which
    actions it offers now (the views and services check again on use)."""
    control = permissions.may_control_sending(user)
    status = campaign.status
    paused_sending = status == Campaign.Status.PAUSED and campaign.launched_at is not None
    # The time it is scheduled for, while it is still to be launched (scheduled, or paused before its time).
    waiting = campaign.scheduled_for and campaign.launched_at is None and status in (
        Campaign.Status.SCHEDULED,
        Campaign.Status.PAUSED,
    )
    paused_percent = None
    if paused_sending:
        counts = progress_selectors.campaign_progress_counts(campaign_id=campaign.pk)
        exact = permissions.count_policy_for(user).exact
        paused_percent = progress_selectors.campaign_progress(counts, exact=exact).percent
    return {
        "review": sees_patient_evidence(user),
        "can_edit": status in EDITABLE,
        "rejection": status == Campaign.Status.REJECTED and bool(campaign.review_comment),
        "approval": status in _APPROVAL_STANDS and campaign.approved_at is not None,
        # Shown with {{ campaign.scheduled_for|when }} (the organisation's zone); the zone it was entered in beside
        # it when that differs, and how far away it is.
        "schedule": bool(waiting),
        "schedule_entered": schedule_entered_display(campaign.scheduled_for, campaign.schedule_timezone)
        if waiting
        else "",
        "schedule_in": schedule_relative(campaign.scheduled_for) if waiting else "",
        "paused_sending": paused_sending,
        "paused_percent": paused_percent,
        "can_pause": control and status in (Campaign.Status.SENDING, Campaign.Status.SCHEDULED),
        "can_resume": control and status == Campaign.Status.PAUSED,
        "can_cancel": control and status in CANCELLABLE,
    }


def _audience_counts(campaign: Campaign) -> dict:
    """Exact counts for the reviewer: matched, covered for the campaign's purpose now, uncovered by reason.
    Coverage comes from consent.selectors alone (through campaigns.segments for a segment)."""
    labels = dict(EXCLUSION_REASONS)
    try:
        counts = audience_counts(segment_id=campaign.segment_id, purpose_id=campaign.purpose_id)
    except ValidationError as error:
        return {"errors": error.messages}
    return {
        "matched": f"{counts.matched:,}",
        "covered": f"{counts.covered:,}",
        "excluded": [(reason, labels.get(reason, reason), f"{n:,}") for reason, n in counts.excluded.items() if n],
    }


def _schedule_form_unbound(campaign: Campaign) -> ScheduleForm:
    """Rescheduling starts from the stored time in its zone; a first schedule from the next whole hour at least an
    hour away, in the organisation's zone (the zone every page shows times in; a person may pick another). The
    page's script says "in N minutes" for the time chosen (static/js/timezone-preselect.js)."""
    if campaign.scheduled_for and campaign.schedule_timezone:
        local = campaign.scheduled_for.astimezone(zoneinfo.ZoneInfo(campaign.schedule_timezone))
        return ScheduleForm(initial={"timezone": campaign.schedule_timezone, "send_at": f"{local:%Y-%m-%dT%H:%M}"})
    return ScheduleForm(
        initial={
            "timezone": settings.TIME_ZONE,
            "send_at": schedule_default_local(timezone_name=settings.TIME_ZONE),
        }
    )


def _review_page(
    request,
    campaign: Campaign,
    *,
    approve_form=None,
    approvesend_form=None,
    reject_form=None,
    launch_form=None,
    schedule_form=None,
    cancel_form=None,
    status=200,
):
    context = {
        "campaign": campaign,
        "counts": _audience_counts(campaign),
        "is_author": campaign.created_by_id == request.user.pk,
        "controls": campaign_controls(request.user, campaign),
        "approve_form": approve_form or SecondFactorForm(prefix="approve"),
        "approvesend_form": approvesend_form or SecondFactorForm(prefix="approvesend"),
        "reject_form": reject_form or RejectForm(),
        "launch_form": launch_form or SecondFactorForm(prefix="launch"),
        "schedule_form": schedule_form or _schedule_form_unbound(campaign),
        "cancel_form": cancel_form or SecondFactorForm(prefix="cancel"),
        "stepup_grace_until": reentry.stepup_grace_until(request.session, request.user),
        "stepup_grace_minutes": reentry.stepup_grace_seconds() // 60,
    }
    return render(request, "campaigns/editor/review.html", context, status=status)


def _with_second_factor(
    request,
    campaign: Campaign,
    form,
    *,
    action: str,
    proceed: Callable[[], HttpResponse],
    details: dict | None = None,
) -> HttpResponse:
    """Approving, sending now, scheduling and cancelling (R-SEC-MFA): once the form is valid and the second factor
    re-entered (a code, a passkey step-up, or the session's grace after one: accounts.reentry), `proceed()` calls
    the service and answers. A refusal is marked on the form with its reason (a wrong code, a code just used, a
    spent passkey confirmation) and audited as `action` by accounts.reentry; a refusal by the service
    (ValidationError) goes on the form. Either way the review page is shown again with the form (named by its
    prefix there)."""
    if reentry.form_valid_within_grace(form, session=request.session, user=request.user):
        passed = reentry.second_factor_reentry(
            user=request.user,
            session=request.session,
            code=form.cleaned_data["code"],
            passkey_stepup=form.cleaned_data["passkey_stepup"],
            object_type="campaign",
            object_id=campaign.pk,
            details={"for": action, **(details or {})},
        )
        if passed:
            try:
                return proceed()
            except ValidationError as error:
                form.add_error(None, error.messages)
        else:
            form.add_error("code", passed.refusal)
    return _review_page(request, campaign, **{f"{form.prefix}_form": form})


@require_safe
def review_queue(request):
    """"Needs your review": the campaigns and journey versions waiting for a compliance officer or an
    administrator, oldest first, with who submitted each and when. The list is put together by
    hipaamail.context_processors.review_counts (journeys stand above campaigns; only the top of the house reads
    both), which also gives the navigation its count; this view decides who may see it."""
    if not sees_patient_evidence(request.user):
        raise Http404
    return render(request, "campaigns/review_queue.html")


@require_http_methods(["GET", "HEAD", "POST"])
def campaign_review(request, campaign_id: int):
    campaign = permissions.access_campaign_review_by_id(request.user, campaign_id)
    if request.method in ("GET", "HEAD"):
        return _review_page(request, campaign)
    decision = request.POST.get("decision")
    if decision == "approve":
        form = SecondFactorForm(request.POST, prefix="approve")

        def approve():
            try:
                campaign_approve(actor=request.user, campaign_id=campaign.pk)
            except PermissionDenied:
                form.add_error(None, _(AUTHOR_REFUSAL))
                return _review_page(request, campaign, approve_form=form, status=403)
            messages.success(request, _("Approved. It can be sent now. Or choose a time to send it at, below."))
            return redirect("campaigns:campaign_review", campaign_id=campaign.pk)

        return _with_second_factor(request, campaign, form, action=actions.STEP_UP_APPROVE, proceed=approve)
    if decision == "approve_send":
        form = SecondFactorForm(request.POST, prefix="approvesend")

        def approve_and_send():
            """One step-up for both (audited "for" campaign.approve "then" campaign.launch); each service audits
            its own step. A launch refused after the approval leaves the campaign approved, and says why."""
            try:
                campaign_approve(actor=request.user, campaign_id=campaign.pk)
            except PermissionDenied:
                form.add_error(None, _(AUTHOR_REFUSAL))
                return _review_page(request, campaign, approvesend_form=form, status=403)
            try:
                campaign_launch(actor=request.user, campaign_id=campaign.pk)
            except CampaignAlreadyLaunched:
                messages.info(request, _("Approved. It was already launched: nothing was sent twice."))
            except ValidationError as error:
                messages.error(request, _("Approved, but not sent: %(why)s") % {"why": " ".join(error.messages)})
                return redirect("campaigns:campaign_review", campaign_id=campaign.pk)
            else:
                messages.success(request, _("Approved, and sending started."))
            return redirect("campaigns:detail", campaign_id=campaign.pk)

        return _with_second_factor(
            request,
            campaign,
            form,
            action=actions.STEP_UP_APPROVE,
            details={"then": actions.STEP_UP_LAUNCH},
            proceed=approve_and_send,
        )
    if decision == "reject":
        form = RejectForm(request.POST)
        if form.is_valid():
            try:
                campaign_reject(
                    actor=request.user, campaign_id=campaign.pk, comment=form.cleaned_data["comment"]
                )
            except ValidationError as error:
                form.add_error(None, error.messages)
            else:
                messages.success(request, _("Rejected: it is back with its author, who sees your comment on the "
                                            "campaign page."))
                return redirect("campaigns:campaign_review", campaign_id=campaign.pk)
        return _review_page(request, campaign, reject_form=form)
    messages.error(request, _("Choose approve or reject."))
    return redirect("campaigns:campaign_review", campaign_id=campaign.pk)


@require_POST
def campaign_launch_now(request, campaign_id: int):
    campaign = permissions.access_campaign_review_by_id(request.user, campaign_id)
    form = SecondFactorForm(request.POST, prefix="launch")

    def launch():
        try:
            campaign_launch(actor=request.user, campaign_id=campaign.pk)
        except CampaignAlreadyLaunched:
            # A second click, or the scheduler got there first: nothing new was created or sent.
            messages.info(request, _("This campaign was already launched: nothing was sent twice."))
        else:
            messages.success(request, _("Sending started."))
        return redirect("campaigns:detail", campaign_id=campaign.pk)

    return _with_second_factor(request, campaign, form, action=actions.STEP_UP_LAUNCH, proceed=launch)


@require_POST
def campaign_schedule(request, campaign_id: int):
    campaign = permissions.access_campaign_review_by_id(request.user, campaign_id)
    form = ScheduleForm(request.POST)

    def schedule():
        scheduled = lifecycle_services.campaign_schedule(
            actor=request.user,
            campaign_id=campaign.pk,
            send_at=form.cleaned_data["send_at"],
            timezone_name=form.cleaned_data["timezone"],
        )
        messages.success(
            request,
            _("Scheduled: it will be sent %(in)s, at the time shown below.") % {
                "in": schedule_relative(scheduled.scheduled_for) or _("shortly")
            },
        )
        return redirect("campaigns:detail", campaign_id=campaign.pk)

    return _with_second_factor(request, campaign, form, action=actions.STEP_UP_SCHEDULE, proceed=schedule)


@require_POST
def campaign_pause(request, campaign_id: int):
    campaign = permissions.access_campaign_review_by_id(request.user, campaign_id)
    try:
        paused = lifecycle_services.campaign_pause(actor=request.user, campaign_id=campaign.pk)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        if paused.launched_at:
            messages.success(request, _("Paused. No more messages are handed to the mail server; a batch already "
                                        "being sent finishes. Resume to continue."))
        else:
            messages.success(request, _("Paused. It will not be launched at its time until you resume it."))
    return redirect("campaigns:detail", campaign_id=campaign.pk)


@require_POST
def campaign_resume(request, campaign_id: int):
    campaign = permissions.access_campaign_review_by_id(request.user, campaign_id)
    try:
        resumed = lifecycle_services.campaign_resume(actor=request.user, campaign_id=campaign.pk)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        if resumed.status == Campaign.Status.SENDING:
            messages.success(request, _("Resumed: sending continues."))
        else:
            messages.success(request, _("Resumed: scheduled again for the time shown below. If that time has "
                                        "passed, it is launched within a minute."))
    return redirect("campaigns:detail", campaign_id=campaign.pk)


@require_POST
def campaign_cancel(request, campaign_id: int):
    campaign = permissions.access_campaign_review_by_id(request.user, campaign_id)
    form = SecondFactorForm(request.POST, prefix="cancel")

    def cancel():
        lifecycle_services.campaign_cancel(actor=request.user, campaign_id=campaign.pk)
        messages.success(request, _("Cancelled. Messages not yet sent will not be sent; the campaign page "
                                    "counts them as blocked: campaign cancelled."))
        return redirect("campaigns:detail", campaign_id=campaign.pk)

    return _with_second_factor(request, campaign, form, action=actions.STEP_UP_CANCEL, proceed=cancel)
