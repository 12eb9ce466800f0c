"""The charts of a campaign's results, drawn on the server as inline SVG (no JavaScript), from a
campaigns.selectors.results.ResultsView: horizontal bars of the audience's outcome and of what happened after sending, and,
when the purpose tracks, a funnel sent -> opened -> clicked.

Geometry only; templates/campaigns/_chart_bars.html and _chart_funnel.html draw it. Every length comes from what
the viewer may read (a Cell's exact number, or the range [low, high] a suppressed one lies in), never from a true
count: a suppressed count is a hatched range, so the picture tells a marketer no more than the numbers beside it
(R-SMALL-CELL)."""
from dataclasses import dataclass

from django.utils.translation import gettext

from campaigns.selectors.results import Cell, ResultsView, Row

WIDTH = 1120  # about the page's width, so that text is drawn near its CSS size
LABEL_RIGHT = 400  # labels end here (text-anchor end)
BAR_LEFT = 412
BAR_SPAN = 520  # the longest bar
ROW = 36
BAR_HEIGHT = 20
TOP = 6
MIN_SOLID = 2  # an exact count above zero stays visible
MIN_RANGE = 8  # a range stays visible however long the scale

TONES = {
    "sent": "ok",
    "queued": "waiting",
    "failed": "bad",
    "bounced_hard": "bad",
    "bounced_soft": "warn",
    "unsubscribed": "muted",
    "complained": "bad",
    "opened": "accent",
    "clicked": "accent",
}


@dataclass(frozen=True)
class Bar:
    key: str
    label: str
    value: str  # the number as shown, with its rate
    tone: str
    y: float
    x: float  # where the solid part starts (funnel bars are centred)
    solid: float  # the part the count certainly reaches
    range: float  # then the hatched part it may reach (a suppressed count)
    text_x: float

    @property
    def range_x(self) -> float:
        return self.x + self.solid

    @property
    def text_y(self) -> float:
        return self.y + BAR_HEIGHT / 2

    @property
    def bar_end(self) -> float:
        return self.x + self.solid + self.range


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    description: str
    bars: list[Bar]
    hatched: bool  # some bar is a range: the legend explains the hatching
    links: tuple[str, ...] = ()  # funnel only: the bands between bars, as SVG polygon points

    width: int = WIDTH

    @property
    def height(self) -> int:
        return int(TOP * 2 + ROW * len(self.bars))

    @property
    def label_right(self) -> int:
        return LABEL_RIGHT


def _r(value: float) -> float:
    return round(value, 1)


def _value_text(row: Row) -> str:
    return f"{row.cell.text} \u00b7 {row.rate}" if row.rate else row.cell.text


def _lengths(cell: Cell, scale: int) -> tuple[float, float]:
    """(solid, range) in the chart's units, from what the viewer may read only."""
    unit = BAR_SPAN / scale if scale else 0
    if cell.exact is not None:
        solid = cell.exact * unit
        return (max(solid, MIN_SOLID) if cell.exact else 0.0), 0.0
    solid = cell.low * unit if cell.low > 1 else 0.0
    return solid, max((cell.high - cell.low) * unit, MIN_RANGE)


def _scale(rows: list[Row], whole: Cell | None = None) -> int:
    return max([row.cell.high for row in rows] + ([whole.high] if whole else []) + [1])


def _description(intro: str, rows: list[Row]) -> str:
    parts = [f"{row.label}: {_value_text(row)}{(' ' + row.of) if row.rate else ''}" for row in rows]
    return intro + " " + "; ".join(parts) + "."


def bar_chart(*, id: str, title: str, intro: str, rows: list[Row], whole: Cell | None = None) -> Chart:
    scale = _scale(rows, whole)
    bars = []
    for index, row in enumerate(rows):
        solid, extent = _lengths(row.cell, scale)
        y = TOP + index * ROW + (ROW - BAR_HEIGHT) / 2
        tone = "blocked" if row.key.startswith("blocked_") else TONES.get(row.key, "accent")
        bars.append(
            Bar(row.key, row.label, _value_text(row), tone, _r(y), BAR_LEFT, _r(solid), _r(extent),
                _r(BAR_LEFT + solid + extent + 8))
        )
    return Chart(id, title, _description(intro, rows), bars, any(bar.range for bar in bars))


def funnel_chart(*, id: str, title: str, intro: str, rows: list[Row]) -> Chart:
    """Centred bars, each joined to the next by a light band: sent, opened, clicked."""
    scale = _scale(rows)
    centre = BAR_LEFT + BAR_SPAN / 2
    bars = []
    for index, row in enumerate(rows):
        solid, extent = _lengths(row.cell, scale)
        y = TOP + index * ROW + (ROW - BAR_HEIGHT) / 2
        x = centre - (solid + extent) / 2
        bars.append(
            Bar(row.key, row.label, _value_text(row), TONES.get(row.key, "accent"), _r(y), _r(x), _r(solid),
                _r(extent), BAR_LEFT + BAR_SPAN + 12)
        )
    links = tuple(
        " ".join(
            f"{_r(x)},{_r(y)}"
            for x, y in (
                (upper.x, upper.y + BAR_HEIGHT),
                (upper.bar_end, upper.y + BAR_HEIGHT),
                (lower.bar_end, lower.y),
                (lower.x, lower.y),
            )
        )
        for upper, lower in zip(bars, bars[1:])
    )
    return Chart(id, title, _description(intro, rows), bars, any(bar.range for bar in bars), links)


def results_charts(view: ResultsView) -> list[Chart]:
    """The charts of a campaign's page, in reading order (none before launch)."""
    if not view.outcomes:
        return []
    charts = [
        bar_chart(
            id="chart-outcome",
            title=gettext("What happened to the audience"),
            intro=gettext("Audience: %(audience)s patients.") % {"audience": view.audience.text},
            rows=view.outcomes,
            whole=view.audience,
        )
    ]
    if view.sent.exact != 0:
        charts.append(
            bar_chart(
                id="chart-after",
                title=gettext("After sending"),
                intro=gettext("Of %(sent)s messages sent:") % {"sent": view.sent.text},
                rows=view.after_sending,
                whole=view.sent,
            )
        )
        if view.tracking:
            charts.append(
                funnel_chart(
                    id="chart-funnel",
                    title=gettext("Opens and clicks"),
                    intro=gettext("Sent, opened, clicked (tracking is on for this purpose)."),
                    rows=view.funnel,
                )
            )
    return charts
