"""A journey's results, in aggregate (issue 14, item 6): per step of each version that has enrolments, how many
entered, were sent the message, were blocked and why, were held for quiet hours, took each way of a branch, left the
journey and why, and are still there; per version, conversion of the treated against the held-out (control) group.

Reads only, a handful of aggregate queries per version; nothing here names a patient.

- entered a step: the enrolments with a step record there (journeys.models.StepRun), and those that are (or ended)
  at it without one yet (waiting, or ended there by a revocation, a stop or a conversion). Steps only go forward,
  so an enrolment enters a step at most once.
- sent, waiting to send, failed: the step's deliveries by status; blocked: the step's deliveries recorded blocked,
  by their block reason (not covered when the step came due, the frequency cap, or blocked by the sender at the
  moment of sending, R-SEND-EVIDENCE).
- held: enrolments the step held to the end of the quiet hours (at least once).
- left the journey here: ended enrolments by the step they ended at and their exit reason; past the last step
  they completed it.
- converted: enrolments whose goal event happened within the conversion period (journeys.engine.intake).

Small cells for marketers (R-SMALL-CELL, R-DEIDENTIFY), as campaigns.selectors.results does for a campaign: every
count from 1 to 10 reads "fewer than 11", and no count on the screen lets a hidden one be worked out. A journey's
counts are tied together by more sums than a campaign's (what entered a step is what left it, went on or is still
there, and what came to it from the steps before), so after the small counts are hidden, every sum is checked: if
the counts shown pin a hidden one down exactly, one more count of that sum is shown as a band of ten ("90 to 99")
instead, until no hidden count can be worked out (complementary suppression). A rate is shown only when both its
numbers are exact; the funnel chart is drawn from what the screen shows (campaigns.results_chart). Compliance
officers and administrators read exact numbers.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Exists, OuterRef, Q
from django.utils.translation import gettext as _

from campaigns.models import Delivery
from campaigns.permissions import SMALL_CELL_LIMIT, count_for_marketer
from campaigns.selectors.results import Cell, Row, cell_for, rate_for
from journeys.models import Enrolment, ExitReason, JourneyStep, JourneyVersion, StepKind, StepOutcome, StepRun

BLOCK_LABELS = dict(Delivery.BlockReason.choices)
EXIT_LABELS = dict(ExitReason.choices)


def journey_running_counts(*, journey_ids: list[int]) -> dict[int, int]:
    """Running enrolments of each journey (one query), for the list."""
    rows = (
        Enrolment.objects.filter(journey_id__in=journey_ids, status=Enrolment.Status.ACTIVE)
        .values("journey_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["journey_id"]: row["n"] for row in rows}


# --- True counts ---------------------------------------------------------------------------------------------


@dataclass
class StepCounts:
    step: JourneyStep
    entered: int = 0
    sent: int = 0
    queued: int = 0
    failed: int = 0
    blocked: dict[str, int] = field(default_factory=dict)
    held: int = 0
    branch_yes: int = 0
    branch_no: int = 0
    exited: dict[str, int] = field(default_factory=dict)
    here: int = 0  # still at the step (running)

    @property
    def went_on(self) -> int:
        return self.entered - sum(self.exited.values()) - self.here


@dataclass
class VersionCounts:
    version: JourneyVersion
    steps: list[StepCounts]
    treated: int
    control: int
    converted_treated: int
    converted_control: int
    completed: int  # ended past the last step


def _version_counts(version: JourneyVersion, steps: list[JourneyStep]) -> VersionCounts:
    treated_enrolments = Enrolment.objects.filter(version=version, control=False)
    row = Enrolment.objects.filter(version=version).aggregate(
        n_treated=Count("id", filter=Q(control=False)),
        n_control=Count("id", filter=Q(control=True)),
        n_converted_treated=Count("id", filter=Q(control=False, converted_at__isnull=False)),
        n_converted_control=Count("id", filter=Q(control=True, converted_at__isnull=False)),
    )
    totals = {name.removeprefix("n_"): value for name, value in row.items()}
    by_step = {step.pk: StepCounts(step=step) for step in steps}
    by_position = {step.position: by_step[step.pk] for step in steps}
    runs = (
        StepRun.objects.filter(step__version=version, enrolment__control=False)
        .values("step_id")
        .annotate(
            entered=Count("enrolment", distinct=True),
            sent=Count("id", filter=Q(delivery__status=Delivery.Status.SENT)),
            queued=Count("id", filter=Q(delivery__status=Delivery.Status.QUEUED)),
            failed=Count("id", filter=Q(delivery__status=Delivery.Status.FAILED)),
            held=Count("enrolment", distinct=True, filter=Q(outcome=StepOutcome.HELD)),
            branch_yes=Count("id", filter=Q(outcome=StepOutcome.BRANCH_YES)),
            branch_no=Count("id", filter=Q(outcome=StepOutcome.BRANCH_NO)),
        )
        .order_by()
    )
    for row in runs:
        counts = by_step[row.pop("step_id")]
        for name, value in row.items():
            setattr(counts, name, value)
    blocked = (
        StepRun.objects.filter(step__version=version, enrolment__control=False, delivery__status=Delivery.Status.BLOCKED)
        .values("step_id", "delivery__block_reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in blocked:
        by_step[row["step_id"]].blocked[row["delivery__block_reason"]] = row["n"]
    # At a step (running, or ended there) without a record of it yet: they entered it too.
    run_here = StepRun.objects.filter(
        enrolment_id=OuterRef("pk"), step__version_id=OuterRef("version_id"), step__position=OuterRef("step_position")
    )
    for row in (
        treated_enrolments.filter(~Exists(run_here)).values("step_position").annotate(n=Count("id")).order_by()
    ):
        if row["step_position"] in by_position:
            by_position[row["step_position"]].entered += row["n"]
    completed = 0
    for row in (
        treated_enrolments.values("status", "step_position", "exit_reason").annotate(n=Count("id")).order_by()
    ):
        counts = by_position.get(row["step_position"])
        if row["status"] == Enrolment.Status.ACTIVE:
            if counts is not None:
                counts.here += row["n"]
        elif counts is not None:
            counts.exited[row["exit_reason"]] = counts.exited.get(row["exit_reason"], 0) + row["n"]
        else:
            completed += row["n"]
    return VersionCounts(
        version=version,
        steps=[by_step[step.pk] for step in steps],
        completed=completed,
        **totals,
    )


# --- What a viewer may read ------------------------------------------------------------------------------------


def _exact_cell(n: int) -> Cell:
    return cell_for(n, exact=True)


def _band(n: int) -> Cell:
    """A count shown as the band of ten it lies in (complementary suppression)."""
    if n <= SMALL_CELL_LIMIT:
        return Cell(count_for_marketer(1), None, 0, 1, SMALL_CELL_LIMIT)
    low = (n // 10) * 10
    return Cell(_("%(low)s to %(high)s") % {"low": f"{low:,}", "high": f"{low + 9:,}"}, None, 0, low, low + 9)


class _Sheet:
    """The counts of one version and the sums that tie them, for complementary suppression. A term is shown (its
    Cell) or not shown at all (None: e.g. how many at a send step have no delivery yet); both kinds must stay
    hidden when small."""

    def __init__(self, *, exact: bool):
        self.exact = exact
        self.true: dict[str, int] = {}
        self.cells: dict[str, Cell | None] = {}
        self.sums: list[tuple[str, list[str]]] = []

    def term(self, key: str, n: int, *, shown: bool = True) -> str:
        if key not in self.true:
            self.true[key] = n
            self.cells[key] = cell_for(n, exact=self.exact) if shown else None
        return key

    def total(self, key: str, parts: list[str]) -> None:
        self.sums.append((key, parts))

    def _pinned(self) -> set[str]:
        """Terms the screen gives away exactly: shown exactly, or the one unknown of a sum of known terms."""
        pinned = {key for key, cell in self.cells.items() if cell is not None and cell.exact is not None}
        changed = True
        while changed:
            changed = False
            for total, parts in self.sums:
                unknown = [term for term in (total, *parts) if term not in pinned]
                if len(unknown) == 1:
                    pinned.add(unknown[0])
                    changed = True
        return pinned

    def _leaks(self) -> set[str]:
        """Counts from 1 to 10 that are hidden (or not shown) and yet pinned down by the counts shown."""
        return {
            key for key in self._pinned()
            if 1 <= self.true[key] <= SMALL_CELL_LIMIT and (self.cells[key] is None or self.cells[key].exact is None)
        }

    def suppress(self) -> None:
        """Band counts shown exactly until no small count can be worked out. For each count that leaks, band the
        largest exact counts one by one until it no longer does, then show again those it did not need. Banding
        a count above ten never makes another leak, so the leaks only go down."""
        if self.exact:
            return
        leaks = self._leaks()
        while leaks:
            leak = min(leaks)
            candidates = sorted(
                (key for key, cell in self.cells.items() if cell is not None and cell.exact and self.true[key] > 0),
                key=lambda key: (-self.true[key], key),
            )
            banded = []
            for key in candidates:
                self.cells[key] = _band(self.true[key])
                banded.append(key)
                if leak not in self._pinned():
                    break
            else:
                return  # every count shown is banded: a sum's one unknown is then a sum of zeros
            for key in banded:
                band = self.cells[key]
                self.cells[key] = _exact_cell(self.true[key])
                if not self._leaks() <= leaks - {leak}:
                    self.cells[key] = band
            leaks = self._leaks()

    def cell(self, key: str) -> Cell:
        cell = self.cells[key]
        assert cell is not None
        return cell


@dataclass(frozen=True)
class StepRow:
    position: int
    kind: str
    entered: Cell
    figures: list[Row]  # sent, waiting, failed, blocked by reason, held, branch ways (what applies)
    exits: list[Row]  # left the journey here, by reason
    here: Cell


@dataclass(frozen=True)
class VersionResults:
    version: JourneyVersion
    exact: bool
    treated: Cell
    control: Cell
    converted_treated: Cell
    converted_control: Cell
    rate_treated: str
    rate_control: str
    completed: Cell
    steps: list[StepRow]
    funnel: list[Row]

    @property
    def has_control(self) -> bool:
        return self.version.holdout_percent > 0 or self.control.exact != 0


def _targets(step: JourneyStep, count: int) -> list[tuple[str, int]]:
    """(term, position) of the ways out of a step that go on to another step (past the last: count + 1)."""
    def to(position: int | None) -> int:
        return min(step.position + 1 if position is None else position, count + 1)

    if step.kind == StepKind.BRANCH:
        return [(f"s{step.position}.yes", to(step.yes_position)), (f"s{step.position}.no", to(step.no_position))]
    if step.kind == StepKind.EXIT:
        return []
    return [(f"s{step.position}.on", to(step.next_position))]


def _sheet(counts: VersionCounts, *, exact: bool) -> _Sheet:
    sheet = _Sheet(exact=exact)
    count = len(counts.steps)
    inflow: dict[int, list[str]] = defaultdict(list)
    treated = sheet.term("treated", counts.treated)
    for step_counts in counts.steps:
        step = step_counts.step
        p = step.position
        entered = sheet.term(f"s{p}.entered", step_counts.entered)
        if p == 1:
            sheet.total(treated, [entered])
        exits = [sheet.term(f"s{p}.exit.{reason}", n) for reason, n in step_counts.exited.items() if n]
        here = sheet.term(f"s{p}.here", step_counts.here)
        if step.kind == StepKind.BRANCH:
            ways = [sheet.term(f"s{p}.yes", step_counts.branch_yes), sheet.term(f"s{p}.no", step_counts.branch_no)]
        elif step.kind == StepKind.EXIT:
            ways = []
        else:
            ways = [sheet.term(f"s{p}.on", max(step_counts.went_on, 0), shown=False)]
        sheet.total(entered, [*ways, *exits, here])
        if step.kind == StepKind.SEND:
            parts = [
                sheet.term(f"s{p}.sent", step_counts.sent),
                sheet.term(f"s{p}.queued", step_counts.queued),
                sheet.term(f"s{p}.failed", step_counts.failed),
                *(sheet.term(f"s{p}.blocked.{reason}", n) for reason, n in step_counts.blocked.items() if n),
            ]
            accounted = step_counts.sent + step_counts.queued + step_counts.failed + sum(step_counts.blocked.values())
            parts.append(sheet.term(f"s{p}.nodelivery", max(step_counts.entered - accounted, 0), shown=False))
            sheet.total(entered, parts)
            held = sheet.term(f"s{p}.held", step_counts.held)
            sheet.total(entered, [held, sheet.term(f"s{p}.notheld", step_counts.entered - step_counts.held, shown=False)])
        for term, target in _targets(step, count):
            inflow[target].append(term)
    for step_counts in counts.steps[1:]:
        p = step_counts.step.position
        if inflow[p]:
            sheet.total(f"s{p}.entered", inflow[p])
    completed = sheet.term("completed", counts.completed)
    if inflow[count + 1]:
        sheet.total(completed, inflow[count + 1])
    converted = sheet.term("converted_treated", counts.converted_treated)
    sheet.total(treated, [converted, sheet.term("unconverted_treated", counts.treated - counts.converted_treated,
                                                 shown=False)])
    control = sheet.term("control", counts.control)
    converted_control = sheet.term("converted_control", counts.converted_control)
    sheet.total(control, [converted_control, sheet.term("unconverted_control",
                                                         counts.control - counts.converted_control, shown=False)])
    sheet.suppress()
    return sheet


def version_results(counts: VersionCounts, *, exact: bool, labels: dict[int, str]) -> VersionResults:
    """The counts as a viewer may read them. `labels`: each step's words (journeys.views.flow), for the funnel."""
    sheet = _sheet(counts, exact=exact)
    rows = []
    for step_counts in counts.steps:
        step = step_counts.step
        p = step.position
        figures: list[Row] = []
        entered = sheet.cell(f"s{p}.entered")
        if step.kind == StepKind.SEND:
            sent = sheet.cell(f"s{p}.sent")
            figures.append(Row("sent", _("Sent"), sent, rate_for(sent, entered), _("of those who entered")))
            if step_counts.queued:
                figures.append(Row("queued", _("Waiting to send"), sheet.cell(f"s{p}.queued")))
            if step_counts.failed:
                figures.append(Row("failed", _("Failed at the mail server"), sheet.cell(f"s{p}.failed")))
            for reason, n in sorted(step_counts.blocked.items()):
                if n:
                    blocked = _("Blocked: %(reason)s") % {"reason": str(BLOCK_LABELS.get(reason, reason)).lower()}
                    figures.append(Row(f"blocked_{reason}", blocked,
                                       sheet.cell(f"s{p}.blocked.{reason}")))
            if step_counts.held:
                figures.append(Row("held", _("Held for quiet hours"), sheet.cell(f"s{p}.held")))
        elif step.kind == StepKind.BRANCH:
            figures.append(Row("branch_yes", _("It happened (yes)"), sheet.cell(f"s{p}.yes")))
            figures.append(Row("branch_no", _("It did not (no)"), sheet.cell(f"s{p}.no")))
        exits = [
            Row(f"exit_{reason}", EXIT_LABELS.get(reason, reason), sheet.cell(f"s{p}.exit.{reason}"))
            for reason, n in sorted(step_counts.exited.items())
            if n
        ]
        rows.append(StepRow(p, step.kind, entered, figures, exits, sheet.cell(f"s{p}.here")))
    treated, control = sheet.cell("treated"), sheet.cell("control")
    converted_treated, converted_control = sheet.cell("converted_treated"), sheet.cell("converted_control")
    funnel = [Row("entered", _("Entered the journey"), treated)] + [
        Row(f"step_{row.position}", f"{row.position}. {labels.get(row.position, '')}"[:44], row.entered)
        for row in rows
    ]
    if counts.version.conversion_event_type:
        funnel.append(Row("converted", _("Converted (reached the goal)"), converted_treated,
                          rate_for(converted_treated, treated), _("of those who entered")))
    return VersionResults(
        version=counts.version,
        exact=exact,
        treated=treated,
        control=control,
        converted_treated=converted_treated,
        converted_control=converted_control,
        rate_treated=rate_for(converted_treated, treated),
        rate_control=rate_for(converted_control, control),
        completed=sheet.cell("completed"),
        steps=rows,
        funnel=funnel,
    )


def journey_results(*, journey_id: int, steps_of, exact: bool, labels_of) -> list[VersionResults]:
    """Each version of the journey that has enrolments, newest first. `steps_of(version)` gives its steps in
    order; `labels_of(version, steps)` their words by position."""
    versions = (
        JourneyVersion.objects.filter(journey_id=journey_id)
        .filter(Exists(Enrolment.objects.filter(version_id=OuterRef("pk"))))
        .order_by("-number")
    )
    results = []
    for version in versions:
        steps = steps_of(version)
        counts = _version_counts(version, steps)
        results.append(version_results(counts, exact=exact, labels=labels_of(version, steps)))
    return results
