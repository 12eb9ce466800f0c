"""A campaign's results, in aggregate (issue 5, item 6): what happened to its audience and to the messages sent.

Reads only. `campaign_counts` is one aggregate query over the campaign's deliveries (index on campaign, status):
the outcome of each delivery (sent, waiting, failed, blocked with each reason), and of the sent ones: bounced
(hard, soft), complained, unsubscribed, opened, clicked. `results_view` turns the counts into what a viewer may
read: exact numbers for compliance officers and administrators, small cells suppressed for marketers.

Unsubscribed: a one-click revocation (consent.Revocation, channel ONE_CLICK) of the very authorization the
delivery was sent under, made after it was sent and before any later message sent under that authorization
(last touch). The one-click endpoint revokes the purpose, not a campaign, and the revocation does not name the
message whose link was used (consent does not know campaigns: the layers point campaigns -> consent), so the
revocation is credited to the last message the patient received for that purpose before unsubscribing: the one
whose link they most likely used, and never more than one campaign per revocation. Revocations through the
portal or in writing are not counted here: the patient did not use this campaign's link.

Opens and clicks are counted only when the purpose has tracking turned on (consent.Purpose.tracking_enabled, off
by default; campaigns.sending.tracking records them); otherwise they are neither computed for the screen nor shown.

Small cells for marketers (R-SMALL-CELL, R-DEIDENTIFY): every count from 1 to 10 reads "fewer than 11", and no
count on the screen lets one be worked out from the others:
- a total (the audience, the blocked) whose hidden parts add up to 1 to 10 would give them away by subtraction,
  so it reads "<the parts shown> + fewer than 11" instead; hidden parts adding up to 11 or more leave it exact;
- a count within another (bounced, unsubscribed, complained, opened within sent; clicked within opened) whose
  complement is 1 to 10 reads "all but fewer than 11";
- a rate is shown only when both of its numbers are shown exactly, so it reveals nothing the numbers do not;
- the chart is drawn from what the screen shows (the exact number, or the range a suppressed one lies in),
  never from the true count (campaigns.results_chart).
Zero is shown as zero: it identifies nobody.
"""
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from campaigns.models import Campaign, Delivery
from campaigns.permissions import SMALL_CELL_LIMIT, count_for_marketer
from campaigns.selectors.campaigns import decided_percent
from consent.models import Revocation

_SENT = Q(status=Delivery.Status.SENT)


def _unsubscribed_through_this_delivery() -> Exists:
    """A one-click revocation of the delivery's authorization after it was sent, with no later message sent
    under that authorization before it (last touch, see the module's docstring)."""
    later_message = Delivery.objects.filter(
        authorization_id=OuterRef(OuterRef("authorization_id")),
        status=Delivery.Status.SENT,
        sent_at__gt=OuterRef(OuterRef("sent_at")),
        sent_at__lte=OuterRef("revoked_at"),
    )
    return Exists(
        Revocation.objects.filter(
            authorization_id=OuterRef("authorization_id"),
            channel=Revocation.Channel.ONE_CLICK,
            revoked_at__gte=OuterRef("sent_at"),
        ).filter(~Exists(later_message))
    )


@dataclass(frozen=True)
class CampaignCounts:
    """True counts of one campaign's deliveries. `opened` and `clicked` are None when tracking is off."""

    audience: int
    sent: int
    queued: int
    failed: int
    blocked: dict[str, int]  # reason -> count, reasons with none left out
    bounced_hard: int
    bounced_soft: int
    complained: int
    unsubscribed: int
    opened: int | None
    clicked: int | None

    @property
    def tracking(self) -> bool:
        return self.opened is not None

    @property
    def blocked_total(self) -> int:
        return sum(self.blocked.values())

    @property
    def progress_percent(self) -> int:
        """How much of the audience is decided (sent, blocked or failed), as the progress bar shows it."""
        return decided_percent(audience=self.audience, queued=self.queued)


def campaign_counts(*, campaign: Campaign) -> CampaignCounts:
    """One aggregate query over the campaign's deliveries."""
    tracking = campaign.purpose.tracking_enabled
    aggregates = {
        "audience": Count("id"),
        "sent": Count("id", filter=_SENT),
        "queued": Count("id", filter=Q(status=Delivery.Status.QUEUED)),
        "failed": Count("id", filter=Q(status=Delivery.Status.FAILED)),
        "bounced_hard": Count("id", filter=_SENT & Q(bounced_at__isnull=False, bounce_type="hard")),
        "bounced_soft": Count("id", filter=_SENT & Q(bounced_at__isnull=False, bounce_type="soft")),
        "complained": Count("id", filter=_SENT & Q(complained_at__isnull=False)),
        "unsubscribed": Count("id", filter=_SENT & Q(_unsubscribed_through_this_delivery())),
    }
    for reason in Delivery.BlockReason.values:
        aggregates[f"blocked_{reason}"] = Count(
            "id", filter=Q(status=Delivery.Status.BLOCKED, block_reason=reason)
        )
    if tracking:
        aggregates["opened"] = Count("id", filter=_SENT & Q(opened_at__isnull=False))
        aggregates["clicked"] = Count("id", filter=_SENT & Q(clicked_at__isnull=False))
    row = Delivery.objects.filter(campaign_id=campaign.pk).aggregate(**aggregates)
    return CampaignCounts(
        audience=row["audience"],
        sent=row["sent"],
        queued=row["queued"],
        failed=row["failed"],
        blocked={
            reason: row[f"blocked_{reason}"] for reason in Delivery.BlockReason.values if row[f"blocked_{reason}"]
        },
        bounced_hard=row["bounced_hard"],
        bounced_soft=row["bounced_soft"],
        complained=row["complained"],
        unsubscribed=row["unsubscribed"],
        opened=row["opened"] if tracking else None,
        clicked=row["clicked"] if tracking else None,
    )


# --- What a viewer may read --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One count as a viewer reads it. `exact` is the number when it is shown as it is, else None; `known` is the
    part of it the screen gives away exactly (0 for "fewer than 11"); [low, high] is the range the screen says it
    lies in, which is all a chart may draw."""

    text: str
    exact: int | None
    known: int
    low: int
    high: int

    @property
    def hidden(self) -> bool:
        return self.exact is None


def _exact(n: int) -> Cell:
    return Cell(f"{n:,}", n, n, n, n)


def _small(n: int) -> bool:
    return 1 <= n <= SMALL_CELL_LIMIT


def cell_for(n: int, *, exact: bool) -> Cell:
    """A count on its own: "fewer than 11" for 1 to 10 when the viewer is a marketer."""
    if exact or not _small(n):
        return _exact(n)
    return Cell(count_for_marketer(1), None, 0, 1, SMALL_CELL_LIMIT)


def total_for(parts: Iterable[tuple[int, Cell]], *, exact: bool) -> Cell:
    """A total of `parts` (true count, its cell) shown beside them. When the parts' hidden remainder is 1 to 10
    an exact total would reveal it, so the total reads "<known> + fewer than 11"."""
    parts = list(parts)
    true = sum(n for n, _ in parts)
    if exact:
        return _exact(true)
    known = sum(cell.known for _, cell in parts)
    remainder = true - known
    if remainder == 0 or remainder > SMALL_CELL_LIMIT:
        return cell_for(true, exact=False)
    if known == 0:
        return Cell(count_for_marketer(1), None, 0, 1, SMALL_CELL_LIMIT)
    return Cell(gettext("%(known)s + fewer than 11") % {"known": f"{known:,}"}, None, known, known + 1, known + SMALL_CELL_LIMIT)


def subset_for(n: int, *, within: Iterable[tuple[int, Cell]], exact: bool) -> Cell:
    """A count of some of another count's patients (opened of sent, say): also hidden when what is left of an
    exactly shown parent is 1 to 10, as "all but fewer than 11"."""
    cell = cell_for(n, exact=exact)
    if exact or cell.hidden:
        return cell
    for parent_true, parent in within:
        if parent.exact is not None and _small(parent_true - n):
            return Cell(
                gettext("all but fewer than 11"), None, 0, max(parent_true - SMALL_CELL_LIMIT, 0), parent_true - 1
            )
    return cell


def rate_for(part: Cell, whole: Cell) -> str:
    """A percentage, only when both numbers are shown exactly (so it reveals nothing they do not)."""
    if part.exact is None or whole.exact is None or whole.exact == 0:
        return ""
    return f"{100 * part.exact / whole.exact:.1f}%"


# Read when shown, in the reader's language.
_blocked_label = lazy(lambda reason: gettext("Blocked: %(reason)s") % {"reason": str(reason).lower()}, str)

OUTCOME_LABELS = {
    "sent": _("Sent"),
    "queued": _("Waiting to send"),
    "failed": _("Failed at the mail server"),
    **{f"blocked_{value}": _blocked_label(label) for value, label in Delivery.BlockReason.choices},
}

AFTER_SENDING_LABELS = {
    "bounced_hard": _("Bounced (hard)"),
    "bounced_soft": _("Bounced (soft)"),
    "unsubscribed": _("Unsubscribed with the one-click link"),
    "complained": _("Marked as spam"),
}


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    cell: Cell
    rate: str = ""  # of the audience, of the sent, or of the opened: `of` says which
    of: str = ""


@dataclass(frozen=True)
class ResultsView:
    """A campaign's results as one viewer may read them (`exact`: compliance officers and administrators)."""

    exact: bool
    audience: Cell
    sent: Cell
    blocked: Cell
    outcomes: list[Row] = field(default_factory=list)  # a partition of the audience
    after_sending: list[Row] = field(default_factory=list)  # counts within the sent
    tracking: bool = False
    funnel: list[Row] = field(default_factory=list)  # sent, opened, clicked (tracking only)

    @property
    def rows(self) -> list[Row]:
        """Every count on the screen, in reading order (the CSV download has the same)."""
        audience = Row("audience", _("Audience"), self.audience)
        blocked = Row("blocked", _("Blocked (all reasons)"), self.blocked)
        return [audience, *self.outcomes, blocked, *self.after_sending, *self.funnel[1:]]


def results_view(counts: CampaignCounts, *, exact: bool) -> ResultsView:
    """The counts as a viewer may read them: exact when `exact`, else suppressed as the module's docstring says."""
    sent = cell_for(counts.sent, exact=exact)
    queued = cell_for(counts.queued, exact=exact)
    failed = cell_for(counts.failed, exact=exact)
    reasons = {reason: cell_for(n, exact=exact) for reason, n in counts.blocked.items()}
    blocked = total_for(((counts.blocked[reason], cell) for reason, cell in reasons.items()), exact=exact)
    audience = total_for(
        [(counts.sent, sent), (counts.queued, queued), (counts.failed, failed), (counts.blocked_total, blocked)],
        exact=exact,
    )
    outcomes = [
        Row(key, OUTCOME_LABELS[key], cell, rate_for(cell, audience), _("of the audience"))
        for key, n, cell in [
            ("sent", counts.sent, sent),
            ("queued", counts.queued, queued),
            ("failed", counts.failed, failed),
            *((f"blocked_{reason}", counts.blocked[reason], cell) for reason, cell in reasons.items()),
        ]
        if n
    ]
    within_sent = [(counts.sent, sent)]
    after_sending = []
    for key in AFTER_SENDING_LABELS:
        cell = subset_for(getattr(counts, key), within=within_sent, exact=exact)
        after_sending.append(Row(key, AFTER_SENDING_LABELS[key], cell, rate_for(cell, sent), _("of the sent")))
    funnel = []
    if counts.tracking:
        opened = subset_for(counts.opened, within=within_sent, exact=exact)
        clicked = subset_for(counts.clicked, within=[*within_sent, (counts.opened, opened)], exact=exact)
        funnel = [
            Row("sent", _("Sent"), sent),
            Row("opened", _("Opened"), opened, rate_for(opened, sent), _("of the sent")),
            Row("clicked", _("Clicked a link"), clicked, rate_for(clicked, opened), _("of those who opened")),
        ]
    return ResultsView(
        exact=exact,
        audience=audience,
        sent=sent,
        blocked=blocked,
        outcomes=outcomes,
        after_sending=after_sending,
        tracking=counts.tracking,
        funnel=funnel,
    )


# --- The campaign list -------------------------------------------------------------------------------------

_WITH_PROGRESS = (Campaign.Status.SENDING, Campaign.Status.PAUSED)


def campaign_list_filtered(*, status: str = "") -> QuerySet[Campaign]:
    """Campaigns, newest first; only those in `status` when it is one of Campaign.Status. A journey's step
    campaigns are not among them: their results are the journey's (per step, on its own results page)."""
    campaigns = (
        Campaign.objects.filter(kind=Campaign.Kind.CAMPAIGN)
        .select_related("purpose", "created_by")
        .order_by("-created_at", "-id")
    )
    if status in Campaign.Status.values:
        campaigns = campaigns.filter(status=status)
    return campaigns


def campaign_progress_percents(*, campaigns: Iterable[Campaign]) -> dict[int, int]:
    """How far each launched campaign has sent, in percent, as its page's bar says it (campaigns.selectors.progress):
    of the messages that can go, those handed to the mail server; blocked patients are never progress. One query for
    those still sending or paused; a sent campaign is complete (no delivery is left queued when it is marked sent)."""
    campaigns = list(campaigns)
    percents = {campaign.pk: 100 for campaign in campaigns if campaign.status == Campaign.Status.SENT}
    open_ids = [campaign.pk for campaign in campaigns if campaign.status in _WITH_PROGRESS and campaign.launched_at]
    if open_ids:
        rows = (
            Delivery.objects.filter(campaign_id__in=open_ids)
            .values("campaign_id")
            .annotate(
                total=Count("id"),
                queued=Count("id", filter=Q(status=Delivery.Status.QUEUED)),
                blocked=Count("id", filter=Q(status=Delivery.Status.BLOCKED)),
            )
            .order_by()
        )
        for row in rows:
            to_go = row["total"] - row["blocked"]
            handed = to_go - row["queued"]
            percents[row["campaign_id"]] = 100 if not row["queued"] else min(99, round(100 * handed / to_go))
        for pk in open_ids:
            percents.setdefault(pk, 0)
    return percents


def campaign_status_counts() -> dict[str, int]:
    """How many campaigns are in each status (the list's filter shows them); counts of campaigns, not patients.
    Journey step campaigns are not counted, as they are not listed."""
    return dict(Campaign.objects.filter(kind=Campaign.Kind.CAMPAIGN).values_list("status").annotate(n=Count("id")).order_by())
