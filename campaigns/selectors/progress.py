"""A campaign's sending progress as its page and its progress endpoint show it (issue 17: the bar filled with blocked
patients, 60 % with none sent). The audience is split into what was sent, what was blocked (never sent: no covering
authorization, a suppressed address, the campaign cancelled), what the mail server refused, and what remains
(queued or being sent). Progress is the share of the messages that can go which went: blocked patients are never
counted as progress.

Every number and length comes from the results' cells (campaigns.selectors.results.results_view): exact for
compliance officers and administrators; for marketers a count from 1 to 10 reads "fewer than 11", and its segment
is drawn at the middle of the range the screen states, so the bar tells no more than the numbers beside it
(R-SMALL-CELL)."""
from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

from campaigns.selectors.campaigns import delivery_outcome_counts
from campaigns.selectors.results import CampaignCounts, Cell, cell_for, results_view


@dataclass(frozen=True)
class Segment:
    key: str  # "sent", "blocked", "failed" or "remaining"
    label: str
    text: str  # the number as shown
    width: float  # percent of the bar


@dataclass(frozen=True)
class Progress:
    segments: list[Segment]
    percent: int  # of the messages that can go, how many were handed to the mail server (sent or refused)
    remaining: bool  # something is still queued or being sent
    summary: str  # the bar's text for screen readers

    def as_json(self) -> dict:
        return {
            "percent": self.percent,
            "remaining": self.remaining,
            "summary": self.summary,
            "segments": [
                {"key": s.key, "label": s.label, "text": s.text, "width": s.width} for s in self.segments
            ],
        }


LABELS = {
    "sent": _("Sent"),
    "blocked": _("Blocked (not sent)"),
    "failed": _("Refused by the mail server"),
    "remaining": _("Remaining (queued or being sent)"),
}


def campaign_progress_counts(*, campaign_id: int) -> CampaignCounts:
    """The counts the progress needs, from one grouped query (the endpoint is polled while a campaign sends);
    what happens after sending (bounces, opens) is not part of it and reads 0."""
    outcome = delivery_outcome_counts(campaign_id=campaign_id)
    blocked = {key.removeprefix("blocked_"): n for key, n in outcome.items() if key.startswith("blocked_") and n}
    return CampaignCounts(
        audience=sum(outcome.values()),
        sent=outcome.get("sent", 0),
        queued=outcome.get("queued", 0),
        failed=outcome.get("failed", 0),
        blocked=blocked,
        bounced_hard=0,
        bounced_soft=0,
        complained=0,
        unsubscribed=0,
        opened=None,
        clicked=None,
    )


def _estimate(cell: Cell) -> float:
    return float(cell.exact) if cell.exact is not None else (cell.low + cell.high) / 2


def campaign_progress(counts: CampaignCounts, *, exact: bool) -> Progress:
    view = results_view(counts, exact=exact)
    cells = {
        "sent": view.sent,
        "blocked": view.blocked,
        "failed": cell_for(counts.failed, exact=exact),
        "remaining": cell_for(counts.queued, exact=exact),
    }
    true = {"sent": counts.sent, "blocked": counts.blocked_total, "failed": counts.failed, "remaining": counts.queued}
    shown = [key for key in cells if true[key] or key in ("sent", "blocked", "remaining")]
    estimates = {key: _estimate(cells[key]) for key in shown}
    whole = sum(estimates.values())
    segments = [
        Segment(
            key=key,
            label=str(LABELS[key]),
            text=cells[key].text,
            width=round(100 * estimates[key] / whole, 2) if whole else 0.0,
        )
        for key in shown
    ]
    to_go = estimates["sent"] + estimates.get("failed", 0.0) + estimates["remaining"]
    if counts.queued == 0:
        percent = 100
    else:
        percent = min(99, round(100 * (to_go - estimates["remaining"]) / to_go)) if to_go else 0
    summary = "; ".join(f"{segment.label}: {segment.text}" for segment in segments)
    return Progress(segments=segments, percent=percent, remaining=counts.queued > 0, summary=summary)
