"""Segment counts for the screen: patients matched, covered, and excluded by reason, with small counts suppressed for
marketers (R-MIN-NECESSARY). Checks made here are for display only; the sender re-checks at send time."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy

from campaigns.models import Segment
from campaigns.permissions import SMALL_CELL_LIMIT, CountPolicy, count_for_marketer
from campaigns.segments import segment_patient_ids, segment_queryset, segment_rules_check
from campaigns.selectors.count_index import CountIndexUnavailable, count_index_ready
from consent.selectors.coverage import CoverageGap
from consent.selectors.standing import coverage_standing_counts

logger = logging.getLogger(__name__)

# The order reasons are listed in, strongest first (as authorization_gap_list ranks them).
EXCLUSION_REASONS = [
    (CoverageGap.NO_AUTHORIZATION, gettext_lazy("No authorization")),
    (CoverageGap.WRONG_PURPOSE, gettext_lazy("Authorization for another purpose only")),
    (CoverageGap.REVOKED, gettext_lazy("Revoked")),
    (CoverageGap.EXPIRED, gettext_lazy("Expired")),
    (CoverageGap.EXPIRY_EVENT, gettext_lazy("Ended by its expiry event")),
    (CoverageGap.DEFECT_MISSING_ELEMENT, gettext_lazy("Defective: lacks a required element")),
    (CoverageGap.DEFECT_COMPOUND, gettext_lazy("Defective: compound")),
    (CoverageGap.DEFECT_CONDITIONED, gettext_lazy("Defective: conditioned")),
    (CoverageGap.DEFECT_FALSE_INFORMATION, gettext_lazy("Defective: false information")),
    (CoverageGap.BOUNCED, gettext_lazy("Address bounced")),
    (CoverageGap.SUPPRESSED, gettext_lazy("Address suppressed")),
]


@dataclass(frozen=True)
class SegmentCounts:
    """Exact counts: matched = covered + sum(excluded.values()). For compliance officers and administrators,
    and the input of `segment_counts_for_marketer`."""

    matched: int
    covered: int
    excluded: dict[str, int] = field(default_factory=dict)


def segment_counts(*, rules, purpose_id: int) -> SegmentCounts:
    """Matched, covered for the purpose now, and the uncovered by reason. Advisory (DESIGN.md 3): the
    sender checks again under lock. Coverage is decided by consent.selectors alone."""
    segment_rules_check(rules)
    return _counts(rules=rules, patients=lambda: segment_queryset(rules), purpose_id=purpose_id)


def audience_counts(*, segment_id: int | None, purpose_id: int) -> SegmentCounts:
    """The same counts for a campaign's audience: its segment, or every patient when it has none."""
    rules = None if segment_id is None else Segment.objects.get(pk=segment_id).rules
    if rules is not None:
        segment_rules_check(rules)
    return _counts(rules=rules, patients=lambda: segment_patient_ids(segment_id=segment_id), purpose_id=purpose_id)


def _counts(*, rules, patients, purpose_id: int) -> SegmentCounts:
    # The process's count index when it is loaded (campaigns.selectors.count_index, ADR 0022): the same counts as
    # the SQL statement, from memory. Otherwise one statement over the authorizations' standing
    # (consent.selectors.standing, ADR 0021): no patient id travels through Python and no evidence table is read.
    index = count_index_ready()
    counts = None
    if index is not None:
        try:
            counts = index.counts(rules=rules, purpose_id=purpose_id, year=timezone.localdate().year)
        except CountIndexUnavailable:
            logger.warning("count index unavailable; counting with SQL", exc_info=True)
    if counts is None:
        counts = coverage_standing_counts(purpose_id=purpose_id, patients=patients())
    covered = counts.pop("covered")
    return SegmentCounts(
        matched=covered + sum(counts.values()),
        covered=covered,
        excluded={reason: counts.get(reason, 0) for reason, _ in EXCLUSION_REASONS},
    )


WITHHELD = gettext_lazy("withheld (11 or more)")  # a withheld total is at least 11: saying so reveals nothing


@dataclass(frozen=True)
class MarketerCounts:
    """Counts as a marketer sees them: strings, with small cells suppressed (R-SMALL-CELL)."""

    matched: str
    covered: str
    excluded: list[tuple[str, str, str]]  # (reason code, label, shown count)
    complementary: bool  # the total was withheld so that a small cell cannot be subtracted back


def segment_counts_for_marketer(counts: SegmentCounts) -> MarketerCounts:
    """R-SMALL-CELL, with complementary suppression.

    Primary: every cell from 1 to 10 reads "fewer than 11" (campaigns.permissions.count_for_marketer).
    Complementary: the screen shows one sum, matched = covered + each exclusion reason. If any part (covered
    or a reason) is suppressed while the total is shown, the total minus the shown parts would give it back.
    So then the total is withheld too. Every shown part is 0 or at least 11, a suppressed part is from 1 to
    10, and a withheld total is only known to be at least 11: the suppressed parts' sum is then bounded
    below by nothing the screen shows, and no cell of 1 to 10 can be derived. (A total from 1 to 10 is
    itself suppressed; then every non-zero part is too.)
    """
    parts = [counts.covered, *counts.excluded.values()]
    part_suppressed = any(1 <= part <= SMALL_CELL_LIMIT for part in parts)
    total_small = 1 <= counts.matched <= SMALL_CELL_LIMIT
    complementary = part_suppressed and not total_small
    labels = dict(EXCLUSION_REASONS)
    return MarketerCounts(
        matched=WITHHELD if complementary else count_for_marketer(counts.matched),
        covered=count_for_marketer(counts.covered),
        excluded=[(reason, labels.get(reason, reason), count_for_marketer(n)) for reason, n in counts.excluded.items()],
        complementary=complementary,
    )


def segment_counts_shown(counts: SegmentCounts, *, policy: CountPolicy) -> dict:
    """The counts panel as `policy` lets its viewer see it (campaigns.permissions.count_policy_for): exact, or with
    small cells and complementary totals suppressed. Zero rows are left out: a hidden row is known to be 0, so nothing
    is concealed by it."""
    if policy.exact:
        labels = dict(EXCLUSION_REASONS)
        shown = {
            "matched": policy.count(counts.matched),
            "covered": policy.count(counts.covered),
            "excluded": [(reason, labels[reason], policy.count(n)) for reason, n in counts.excluded.items()],
            "complementary": False,
            "suppressed": False,
        }
    else:
        marketer = segment_counts_for_marketer(counts)
        shown = {
            "matched": marketer.matched,
            "covered": marketer.covered,
            "excluded": marketer.excluded,
            "complementary": marketer.complementary,
            "suppressed": True,
        }
    shown["excluded"] = [row for row in shown["excluded"] if row[2] != "0"]
    return shown


def segment_list() -> QuerySet[Segment]:
    return Segment.objects.select_related("created_by").order_by("name", "id")


def segment_counts_shown_for(*, rules, purpose_id: int, policy: CountPolicy) -> dict:
    """One segment's counts for a purpose, as `policy` shows them (segment_counts_shown), or {"errors": [...]} for a
    stored tree that is no longer valid. The segment list and the builder's headline both show this, so the two
    never disagree (issue 17: "withheld (11 or more)" beside a list that showed 43)."""
    try:
        counts = segment_counts(rules=rules, purpose_id=purpose_id)
    except ValidationError as error:
        return {"errors": error.messages}
    return segment_counts_shown(counts, policy=policy)


def audience_choice_list(*, purpose_id: int, policy: CountPolicy, limit: int = 100) -> list[dict]:
    """The wizard's audience picker: "every patient" first, then each saved segment by name, each with its counts
    for the purpose now as `policy` shows them: how many match, and how many the purpose's authorizations cover
    (who would get it). {"segment": None | Segment, "counts": segment_counts_shown(...) or {"errors": [...]}}."""
    every = audience_counts(segment_id=None, purpose_id=purpose_id)
    choices = [{"segment": None, "counts": segment_counts_shown(every, policy=policy)}]
    for segment in segment_list()[:limit]:
        choices.append(
            {"segment": segment, "counts": segment_counts_shown_for(rules=segment.rules, purpose_id=purpose_id, policy=policy)}
        )
    return choices


def audience_counts_shown(*, segment_id: int | None, purpose_id: int, policy: CountPolicy) -> dict:
    """A campaign's audience counts (its segment, or every patient) as `policy` shows them: the wizard's review."""
    try:
        counts = audience_counts(segment_id=segment_id, purpose_id=purpose_id)
    except ValidationError as error:
        return {"errors": error.messages}
    return segment_counts_shown(counts, policy=policy)
