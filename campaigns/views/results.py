"""A campaign's results as a CSV file: the same aggregates, suppressed the same way, as the campaign page shows
to the same person (campaigns.selectors.results). No patient appears in it; the download is audited."""
import io

from django.http import HttpResponse
from django.views.decorators.http import require_safe

from audit import actions
from audit.services import audit_record
from campaigns import permissions
from campaigns.reports.exports import SafeCsvWriter
from campaigns.selectors import results


@require_safe
def campaign_results_csv(request, campaign_id: int):
    campaign = permissions.access_campaign_by_id(request.user, campaign_id)
    exact = permissions.count_policy_for(request.user).exact
    view = results.results_view(results.campaign_counts(campaign=campaign), exact=exact)
    out = io.StringIO()
    writer = SafeCsvWriter(out)
    writer.writerow(["campaign", "metric", "label", "patients", "share", "share_of"])
    for row in view.rows:
        # A marketer's suppressed cell is text ("fewer than 11"), never a number that could be summed away.
        value = row.cell.exact if row.cell.exact is not None else row.cell.text
        writer.writerow([campaign.pk, row.key, row.label, value, row.rate, row.of if row.rate else ""])
    audit_record(
        actor=request.user,
        action=actions.CAMPAIGN_RESULTS_DOWNLOADED,
        object_type="campaign",
        object_id=campaign.pk,
        details={"exact": exact},
    )
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-results.csv"'
    return response
