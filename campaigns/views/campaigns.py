
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import pgettext
from django.views.decorators.http import require_safe

from accounts.roles import sees_patient_evidence
from audit import actions
from audit.services import audit_record
from campaigns import permissions
from campaigns.models import Campaign
from campaigns.results_chart import results_charts
from campaigns.selectors import campaigns as selectors
from campaigns.selectors import progress, results
from campaigns.selectors.results import campaign_list_filtered, campaign_progress_percents, campaign_status_counts
from campaigns.services.lifecycle import EDITABLE
from campaigns.views.review import campaign_controls


@require_safe
def campaign_progress(request, campaign_id: int):
    """The live progress bar's data, polled while a campaign sends: the status, and the audience split into sent,
    blocked, refused and remaining as this viewer may read it (campaigns.selectors.progress; marketers get the
    suppressed cells)."""
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    counts = progress.campaign_progress_counts(campaign_id=campaign.pk)
    shown = progress.campaign_progress(counts, exact=permissions.count_policy_for(request.user).exact)
    return JsonResponse({"status": campaign.status, **shown.as_json()})


@require_safe
def campaign_detail(request, campaign_id: int):
    """A campaign: its state and controls, its results in aggregate with their charts
    (campaigns.selectors.results), and, for compliance officers and administrators, the evidence for each patient
    (audited per page viewed)."""
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    counts = results.campaign_counts(campaign=campaign)
    evidence = sees_patient_evidence(request.user)  # the per-patient evidence below
    view = results.results_view(counts, exact=permissions.count_policy_for(request.user).exact)
    context = {
        "campaign": campaign,
        "progress": progress.campaign_progress(counts, exact=permissions.count_policy_for(request.user).exact),
        "evidence": evidence,
        "controls": campaign_controls(request.user, campaign),
        "results": view,
        "charts": results_charts(view),
    }
    if evidence:
        page = Paginator(selectors.delivery_evidence_list(campaign_id=campaign.pk), 100).get_page(
            request.GET.get("page")
        )
        audit_record(
            actor=request.user,
            action=actions.CAMPAIGN_EVIDENCE_VIEWED,
            object_type="campaign",
            object_id=campaign.pk,
            details={"page": page.number},
        )
        context |= {
            "page": page,
            "uncovered_sends": selectors.delivery_sent_without_coverage_count(campaign_id=campaign.pk),
        }
    return render(request, "campaigns/campaign_detail.html", context)


@require_safe
def home(request):
    """The campaign list: newest first, filtered by status, 25 a page; each with its status and, once launched,
    how much of its audience is decided (one query for the page's campaigns still sending or paused)."""
    status = request.GET.get("status", "")
    if status not in Campaign.Status.values:
        status = ""
    page = Paginator(campaign_list_filtered(status=status), 25).get_page(request.GET.get("page"))
    campaigns = list(page.object_list)
    percents = campaign_progress_percents(campaigns=campaigns)
    for campaign in campaigns:
        campaign.progress_percent = percents.get(campaign.pk)
    by_status = campaign_status_counts()
    # The filter, in the order a campaign moves through its statuses; a status no campaign has is left out.
    filters = [("", pgettext("campaigns filter", "All"), sum(by_status.values()))] + [
        (value, label, by_status[value]) for value, label in Campaign.Status.choices if by_status.get(value)
    ]
    return render(
        request,
        "home.html",
        {"campaigns": campaigns, "page": page, "status": status, "filters": filters, "editable": EDITABLE},
    )
