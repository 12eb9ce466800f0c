"""What every compliance report shares: the audit of the export, the provenance block printed on it (filters,
generation time, who generated it, the audit chain head), and the two renderers: a CSV streamed in constant
memory and a PDF made with WeasyPrint. The second factor asked again before an export is accounts.reentry's.

The export is audited *before* the report is read (`report.exported`, ids and codes only: R-NO-PHI-LEAK), and
the chain head printed on the report is read after that, so the report names a chain that already holds the
record of its own export (R-SEC-AUDIT, R-SEC-INTEGRITY).
"""
import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice

from django.conf import settings
from django.db import connection, transaction
from django.db.models import CharField, F, Func
from django.http import HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts import roles
from audit import actions
from audit import selectors as audit_selectors
from audit.services import audit_record, audit_seal, role_of


class ReportKind:
    CAMPAIGN_EVIDENCE = "campaign_evidence"
    PATIENT_LEDGER = "patient_ledger"
    COMPLIANCE_SUMMARY = "compliance_summary"


TITLES = {
    ReportKind.CAMPAIGN_EVIDENCE: gettext_lazy("Campaign evidence report"),
    ReportKind.PATIENT_LEDGER: gettext_lazy("Patient consent ledger"),
    ReportKind.COMPLIANCE_SUMMARY: gettext_lazy("Compliance summary"),
}

PDF = "pdf"
CSV = "csv"
FORMATS = (PDF, CSV)

# Rows per piece of a streamed CSV: large enough that the per-chunk cost of the WSGI server is negligible,
# small enough that a chunk stays far under a megabyte.
CSV_ROWS_PER_CHUNK = 1000
# Rows fetched per round trip of the server-side cursor (QuerySet.iterator).
CURSOR_CHUNK_SIZE = 5000
# A PDF is laid out whole in memory and read by a person: past this many rows per table it prints the first
# rows and says that the CSV export holds every one.
PDF_TABLE_ROW_LIMIT = 500


@dataclass(frozen=True)
class ChainHead:
    """The newest sealed event of the audit chain when the report was made: its place in the chain, its id and
    its hash (or, on an audit trail without a chain, the newest event's id)."""

    event_id: int | None
    sequence: int | None = None
    hash: str = ""
    occurred_at: datetime | None = None

    @property
    def label(self) -> str:
        if self.event_id is None:
            return "empty audit trail"
        place = f"sequence {self.sequence} (event #{self.event_id})" if self.sequence else f"event #{self.event_id}"
        return place + (f", SHA-256 {self.hash}" if self.hash else "")


def audit_chain_head() -> ChainHead:
    """The head of the sealed audit chain now (audit.selectors.audit_chain_head): what the export names as the
    state of the trail. Events are sealed right after their commit, so it includes all but the last instant's."""
    head = audit_selectors.audit_chain_head()
    if head.event_id is None:
        return ChainHead(event_id=None)
    return ChainHead(event_id=head.event_id, sequence=head.sequence, hash=head.hash, occurred_at=head.occurred_at)


@dataclass(frozen=True)
class ReportMeta:
    """The provenance block of one export, printed on the PDF and as the CSV's preamble."""

    kind: str
    format: str
    filters: tuple[tuple[str, str], ...]
    generated_at: datetime
    generated_by: str
    generated_by_role: str
    chain_head: ChainHead
    export_event_id: int
    organisation: str = field(default_factory=lambda: settings.HIPAAMAIL_ORGANISATION_NAME)

    @property
    def generated_by_role_label(self) -> str:
        """The role in the reader's language, for the PDF (the CSV keeps the role's name, which the audit trail uses)."""
        return str(roles.LABELS.get(self.generated_by_role, self.generated_by_role))

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    @property
    def generated_at_utc(self) -> str:
        return utc_text(self.generated_at)


def utc_text(moment: datetime | None, *, seconds: bool = True) -> str:
    """A time for people: UTC, named as such. Reports state every time in UTC so that the PDF, the CSV and
    the audit trail agree to the second."""
    if moment is None:
        return ""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def iso_utc(moment: datetime | None) -> str:
    """A time for machines, as every CSV of the reports writes it: ISO 8601 in UTC, the way PostgreSQL prints a
    timestamp in UTC ("2026-11-25 22:48:26.12345+00": trailing zeros of the fraction dropped, no fraction on
    a whole second)."""
    if moment is None:
        return ""
    moment = moment.astimezone(UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return moment.strftime("%Y-%m-%d %H:%M:%S") + fraction + "+00"


class IsoUtc(Func):
    """A timestamp column as iso_utc's text, made by the database. Parsing a million timestamps into Python
    datetimes only to print them again costs more than everything else in a large export, and to_char three
    times what the plain text cast costs (measured: bench/report_export.py), so the CSV of the campaign
    evidence asks PostgreSQL for its own ISO output, in UTC (report_snapshot sets both)."""

    output_field = CharField()
    template = "(%(expressions)s)::text"

    def __init__(self, column: str):
        super().__init__(F(column))

    def as_sqlite(self, compiler, connection, **extra_context):
        # SQLite keeps the UTC time as text, "YYYY-MM-DD HH:MM:SS[.ffffff]": add the offset.
        sql, params = self.as_sql(compiler, connection, template="(%(expressions)s || '+00')", **extra_context)
        return sql, params


def report_export_start(
    *,
    actor,
    kind: str,
    format: str,
    object_type: str,
    object_id: object,
    filters: Sequence[tuple[str, str]],
    details: dict | None = None,
    patient_id: int | None = None,
) -> ReportMeta:
    """Audit the export (`report.exported`: the report kind, the format, the object's id; ids and codes
    only; `patient_id` when the report is about one patient, so it shows in their history), then read the
    chain head that the report will print."""
    if kind not in TITLES or format not in FORMATS:
        raise ValueError(f"Unknown report {kind!r} or format {format!r}.")
    event = audit_record(
        actor=actor,
        action=actions.REPORT_EXPORTED,
        object_type=object_type,
        object_id=object_id,
        patient_id=patient_id,
        details={"kind": kind, "format": format, **(details or {})},
    )
    audit_seal()  # chain the export's own event (and any other committed one), so the head printed names it
    return ReportMeta(
        kind=kind,
        format=format,
        filters=tuple(filters),
        generated_at=timezone.now(),
        generated_by=actor.email,
        generated_by_role=role_of(actor),
        chain_head=audit_chain_head(),
        export_event_id=event.pk,
    )


def report_filename(meta: ReportMeta, subject: str) -> str:
    """Ids and dates only: a filename travels in headers, downloads folders and mail (R-NO-PHI-LEAK)."""
    stamp = meta.generated_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{meta.kind.replace('_', '-')}-{subject}-{stamp}.{meta.format}"


def _download_headers(response, filename: str) -> None:
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"


@contextmanager
def report_snapshot():
    """Everything one report reads, in one read-only transaction: on PostgreSQL a REPEATABLE READ snapshot, so
    the totals on a report agree with its rows even while campaigns send. It also lets the server-side cursor
    stream: outside a transaction Django declares it WITH HOLD, and PostgreSQL then computes and stores the
    whole result before the first row (measured: bench/report_export.py)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # Nested in a caller's transaction (a test's), the isolation is the caller's: it has begun.
                if len(connection.atomic_blocks) == 1:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                # IsoUtc's text: ISO output, in UTC, whatever the server's defaults.
                cursor.execute("SET LOCAL DateStyle = 'ISO, YMD'")
                cursor.execute("SET LOCAL TimeZone = 'UTC'")
                # A report reads every row its cursor selects, so say so: PostgreSQL's default (0.1) plans
                # a cursor for a fast first row (nested loops: a million index probes), 1.0 for the whole
                # result (hash joins). Measured on a million rows: about 25% faster in total, the first
                # byte a few seconds later (bench/report_export.py, docs/benchmarks.md).
                cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        yield


# --- CSV ------------------------------------------------------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START_CHARACTERS = frozenset(_FORMULA_STARTS)
# Cells a spreadsheet reads as numbers or blanks, never as a formula, whatever their sign: written as they are.
_NUMBERS = frozenset({int, float, bool, Decimal, type(None)})


def spreadsheet_safe(text: str | None) -> str:
    """Free text (a campaign name, a typed signature) that a spreadsheet would run as a formula is quoted
    with a leading apostrophe (CSV injection, OWASP)."""
    if not text:
        return ""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _cell_safe(cell: object) -> object:
    if cell.__class__ in _NUMBERS:
        return cell
    return spreadsheet_safe(str(cell))


def _row_safe(row: Iterable) -> list:
    # Inline for the common cells (numbers and plain text), so a million-row report pays no call per cell.
    return [
        ("'" + cell if cell[:1] in _FORMULA_START_CHARACTERS else cell)
        if cell.__class__ is str
        else (cell if cell.__class__ in _NUMBERS else _cell_safe(cell))
        for cell in row
    ]


class SafeCsvWriter:
    """csv.writer for every CSV the product exports: each cell that is not a number is written as text a
    spreadsheet cannot run (spreadsheet_safe), whoever typed it (a campaign or journey name, a record number, a
    staff email, a device's name). One writer, so that no export, present or future, depends on each of its
    call sites remembering which of its columns are free text (CSV injection, OWASP)."""

    def __init__(self, buffer, **options):
        self._writer = csv.writer(buffer, **options)

    def writerow(self, row: Iterable):
        return self._writer.writerow(_row_safe(row))

    def writerows(self, rows: Iterable[Iterable]):
        # map keeps csv's C loop pulling the rows (lazily, one chunk at a time).
        return self._writer.writerows(map(_row_safe, rows))


def csv_preamble(meta: ReportMeta, extra: Iterable[tuple[str, object]] = ()) -> Iterator[list]:
    """Provenance lines, each starting with '#', before the table (read_csv(comment="#") skips them)."""
    yield ["# report", meta.title]
    yield ["# organisation", spreadsheet_safe(meta.organisation)]
    for name, value in meta.filters:
        yield [f"# filter: {name}", value]
    yield ["# generated_at", iso_utc(meta.generated_at)]
    yield ["# generated_by", f"{meta.generated_by} ({meta.generated_by_role})"]
    yield ["# audit_chain_head", meta.chain_head.label]
    yield ["# export_audit_event", f"#{meta.export_event_id}"]
    for name, value in extra:
        yield [f"# {name}", value]


def _times_as_text(row: Sequence) -> list:
    return [iso_utc(value) if isinstance(value, datetime) else value for value in row]


def csv_stream(
    *,
    preamble: Iterable[Sequence],
    header: Sequence[str],
    rows: Iterable[Sequence],
    trailer: Callable[[], Iterable[Sequence]] | None = None,
    times_as_text: bool = False,
) -> Iterator[str]:
    """The CSV text in pieces of CSV_ROWS_PER_CHUNK rows. Lazy: nothing is read from `rows` until the first
    piece is asked for, and never more than one piece is held, whatever the number of rows.

    `trailer`, called once the rows are written, gives '#' lines for the end (totals counted while
    streaming). Datetimes are written as iso_utc; `times_as_text` says the rows already hold them so
    (IsoUtc), sparing a check per value."""
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer, lineterminator="\r\n")
    writer.writerows(preamble)
    writer.writerow(header)
    rows = iter(rows if times_as_text else map(_times_as_text, rows))
    while True:
        # csv's C loop pulls the rows itself: no Python statement per row here.
        writer.writerows(islice(rows, CSV_ROWS_PER_CHUNK))
        piece = buffer.getvalue()
        if not piece:
            break
        yield piece
        buffer.seek(0)
        buffer.truncate()
    if trailer is not None:
        writer.writerows(trailer())
        yield buffer.getvalue()


def csv_response(meta: ReportMeta, *, subject: str, content: Iterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    _download_headers(response, report_filename(meta, subject))
    return response


# --- PDF ------------------------------------------------------------------------------------------------------


def pdf_render(template: str, context: dict, *, title: str, subject: str) -> bytes:
    """WeasyPrint, as for the signed authorization copy (consent.pdf.pdf_write): self-contained HTML, a fetcher
    that refuses every outside resource, and a tagged PDF/UA-1 with its title, author, subject and language."""
    from consent.pdf import pdf_write

    return pdf_write(render_to_string(template, context), title=title, subject=subject)


def pdf_metadata(meta: ReportMeta, subject: str) -> tuple[str, str]:
    """The PDF's title and subject: the report, what it covers by id ("campaign-12"), when and by which export
    event; ids only, never a patient's name (R-NO-PHI-LEAK)."""
    if match := re.fullmatch(r"([a-z]+)-(\d+)", subject):
        covers = f"{match[1]} #{match[2]}"
    elif match := re.fullmatch(r"(\d{4}-\d\d-\d\d)-to-(\d{4}-\d\d-\d\d)", subject):
        covers = f"{match[1]} to {match[2]}"
    else:
        covers = subject
    title = f"{meta.title}, {covers}"
    description = (
        f"{meta.title} ({covers}), generated {meta.generated_at_utc}; export audit event #{meta.export_event_id}."
    )
    return title, description


def pdf_response(meta: ReportMeta, *, subject: str, template: str, context: dict) -> HttpResponse:
    title, description = pdf_metadata(meta, subject)
    pdf = pdf_render(
        template,
        {
            "meta": meta,
            "row_limit": PDF_TABLE_ROW_LIMIT,
            "postal_address": getattr(settings, "HIPAAMAIL_POSTAL_ADDRESS", ""),
            **context,
        },
        title=title,
        subject=description,
    )
    response = HttpResponse(pdf, content_type="application/pdf")
    _download_headers(response, report_filename(meta, subject))
    return response


class Limited:
    """The first `limit` items of an iterable for a PDF table, and whether there were more."""

    def __init__(self, items: Iterable, limit: int | None = None):
        limit = PDF_TABLE_ROW_LIMIT if limit is None else limit
        self.items = []
        self.truncated = False
        for item in items:
            if len(self.items) == limit:
                self.truncated = True
                break
            self.items.append(item)
        if hasattr(items, "close"):
            items.close()  # a generator over a server-side cursor: release the cursor now
        self.limit = limit

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
