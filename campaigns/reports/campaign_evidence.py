"""Campaign evidence report: what a campaign said, who wrote, approved and scheduled it, and for each patient in
its audience the decision and its evidence (R-SEND-EVIDENCE): the authorization (form version, signed date)
that covered each sent message, with the message's own times (`checked_at`, when the coverage check that allowed
it ran; `sent_at`, when the mail server accepted it; ADR 0010), the reason each excluded patient was left out,
the SMTP code of each message the server refused, bounces, complaints and the one-click unsubscribes that
followed.

Patients are named by their internal id only: the evidence of a campaign needs no identifier more
(R-MIN-NECESSARY); the patient consent ledger identifies one patient fully.

A journey's send step is a campaign of kind `journey_step` (ADR 0016) and has the same report, labelled as a
journey message: it is never launched (it opens for deliveries when its journey version is approved, which is its
`launched_at`) and has no audience fixed at a launch: a delivery is created each time an enrolment reaches the step
(`created_at`, and the enrolment's `sequence`: a patient may pass the step once per enrolment), queued for the one
sender or blocked at once (not covered, or over the frequency cap) by the journey's scanner pass.
"""
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F, Q

from campaigns.models import Campaign, Delivery
from campaigns.reports import exports
from campaigns.selectors.campaigns import JourneyMessage, delivery_outcome_counts, journey_message_of
from campaigns.selectors.coverage import GROUNDS, covered_at_send, sent_without_coverage_counts
from consent.models import Revocation

HEADER = [
    "delivery_id",
    "patient_id",
    "outcome",
    "block_reason",
    "checked_at",
    "sent_at",
    "smtp_code",
    "authorization_id",
    "form_version",
    "authorization_signed_at",
    "authorization_expires_at",
    "bounced_at",
    "bounce_type",
    "complained_at",
    "authorization_revoked_at",
    "revocation_channel",
    "possible_duplicate",
    "created_at",
    "sequence",
    "covered_at_send",
]
_COLUMNS = [
    "id",
    "patient_id",
    "status",
    "block_reason",
    "checked_at",
    "sent_at",
    "smtp_code",
    "authorization_id",
    "authorization__form_version__version",
    "authorization__signed_at",
    "authorization__expires_at",
    "bounced_at",
    "bounce_type",
    "complained_at",
    "authorization__revocation__revoked_at",
    "authorization__revocation__channel",
    "possible_duplicate",
    "created_at",
    "sequence",
]
_TIME_COLUMNS = {
    "checked_at",
    "sent_at",
    "authorization__signed_at",
    "authorization__expires_at",
    "bounced_at",
    "complained_at",
    "authorization__revocation__revoked_at",
    "created_at",
}
BLOCK_REASON_LABELS = dict(Delivery.BlockReason.choices)


def campaign_content(campaign: Campaign) -> dict:
    """The content a campaign sends, as stored: the one place that says which fields make it up, so the hash
    follows the content model. Subject and text always; the library template and the ordered library blocks
    where the campaign has them."""
    content: dict = {"subject": campaign.subject, "body_text": campaign.body_text}
    template = getattr(campaign, "template", None)
    if template is not None:
        content["template"] = {
            name: getattr(template, name, "") for name in ("header_html", "footer_html", "css")
        }
    blocks = getattr(campaign, "content_blocks", None)
    if blocks is not None:
        content["blocks"] = [use.block.html for use in blocks.select_related("block").order_by("position")]
    return content


def campaign_content_hash(campaign: Campaign) -> str:
    """SHA-256 of the content as canonical JSON (sorted keys, UTF-8, no spaces), so that anyone can recompute
    it from the stored fields."""
    canonical = json.dumps(campaign_content(campaign), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class CampaignFacts:
    campaign: Campaign
    content_hash: str
    content_fields: list[str]
    outcomes: dict[str, int]
    blocked: list[tuple[str, str, int]]  # (reason, label, count)
    bounces: dict[str, int]
    complaints: int
    unsubscribes: int
    uncovered: dict[str, int]
    journey: JourneyMessage | None = None  # a journey's step campaign: which journey, version and step

    @property
    def audience(self) -> int:
        return sum(self.outcomes.values())

    @property
    def uncovered_grounds(self) -> list[tuple[str, int]]:
        return [(label, self.uncovered[name]) for name, label in GROUNDS.items()]


def _campaign(campaign_id: int) -> Campaign:
    return Campaign.objects.select_related("purpose", "created_by", "approved_by", "reviewed_by", "segment").get(
        pk=campaign_id
    )


def campaign_evidence_facts(*, campaign_id: int) -> CampaignFacts:
    """Everything about the campaign that is not one row per patient: two aggregate passes (for the PDF; the
    CSV counts its totals from the rows it streams instead, so its first byte does not wait for them)."""
    campaign = _campaign(campaign_id)
    deliveries = Delivery.objects.filter(campaign_id=campaign.pk)
    outcomes = delivery_outcome_counts(campaign_id=campaign.pk)
    blocked = sorted(
        (
            (key.removeprefix("blocked_"), BLOCK_REASON_LABELS.get(key.removeprefix("blocked_"), key), n)
            for key, n in outcomes.items()
            if key.startswith("blocked_")
        ),
        key=lambda item: (-item[2], item[0]),
    )
    # One pass over the sent deliveries for the coverage check and what followed the sends.
    after = sent_without_coverage_counts(
        deliveries,
        also={
            "hard": Count("id", filter=Q(bounce_type="hard")),
            "soft": Count("id", filter=Q(bounce_type="soft")),
            "complaints": Count("id", filter=Q(complained_at__isnull=False)),
            "unsubscribes": Count("id", filter=_unsubscribed()),
        },
    )
    content = campaign_content(campaign)
    return CampaignFacts(
        campaign=campaign,
        content_hash=campaign_content_hash(campaign),
        content_fields=sorted(content),
        outcomes=outcomes,
        blocked=blocked,
        bounces={"hard": after["hard"], "soft": after["soft"]},
        complaints=after["complaints"],
        unsubscribes=after["unsubscribes"],
        uncovered={name: after[name] for name in ["total", *GROUNDS]},
        journey=journey_message_of(campaign),
    )


def _unsubscribed() -> Q:
    """A one-click revocation of the authorization that covered this message, after it was sent."""
    return Q(
        status=Delivery.Status.SENT,
        authorization__revocation__channel=Revocation.Channel.ONE_CLICK,
        authorization__revocation__revoked_at__gte=F("sent_at"),
    )


def campaign_evidence_rows(
    *, campaign_id: int, status: str | None = None, only: Q | None = None, limit: int | None = None
) -> Iterator[tuple]:
    """One tuple per delivery (HEADER's columns), in delivery order, from a server-side cursor: the whole
    audience, however large, in constant memory. Times come as text from the database (exports.IsoUtc,
    "2026-11-25T22:48:26.123456Z"), None for none. The last column is the coverage check of the row, made by
    the database from the stored evidence (campaigns.selectors.coverage.covered_at_send). With `limit`, the first
    rows only, by LIMIT (a PDF table), which lets the database stop early."""
    purpose_id = Campaign.objects.filter(pk=campaign_id).values_list("purpose_id", flat=True).get()
    deliveries = Delivery.objects.filter(campaign_id=campaign_id)
    if status is not None:
        deliveries = deliveries.filter(status=status)
    if only is not None:
        deliveries = deliveries.filter(only)
    texts = {f"_text_{index}": exports.IsoUtc(column) for index, column in enumerate(_COLUMNS) if column in _TIME_COLUMNS}
    columns = [
        f"_text_{index}" if column in _TIME_COLUMNS else column for index, column in enumerate(_COLUMNS)
    ]
    rows = (
        deliveries.annotate(**texts, _covered=covered_at_send(purpose_id=purpose_id))
        .order_by("id")
        .values_list(*columns, "_covered")
    )
    if limit is not None:
        yield from rows[:limit]
    else:
        yield from rows.iterator(chunk_size=exports.CURSOR_CHUNK_SIZE)


_STATUS = HEADER.index("outcome")
_COVERED = HEADER.index("covered_at_send")


def _csv_rows(campaign_id: int, totals: Counter) -> Iterator[tuple]:
    """The rows as they come from the cursor (times as text, None an empty cell, booleans True/False),
    counted on the way for the totals at the end of the file."""
    for row in campaign_evidence_rows(campaign_id=campaign_id):
        totals[row[_STATUS]] += 1
        if row[_COVERED] is False:
            totals["sent_without_covering_authorization"] += 1
        yield row


def _csv_preamble_facts(campaign: Campaign) -> list[tuple[str, object]]:
    safe = exports.spreadsheet_safe
    content = campaign_content(campaign)
    journey = journey_message_of(campaign)
    kind = [("message_kind", campaign.kind)]
    if journey is not None:
        kind += [
            ("journey_message", safe(journey.label)),
            ("journey", safe(journey.journey)),
            ("journey_version", journey.version if journey.version is not None else ""),
            ("journey_step", journey.step if journey.step is not None else ""),
            ("deliveries_created", "one by one, as each enrolment reaches the step (created_at); never launched"),
        ]
    return [
        ("campaign_id", campaign.pk),
        ("campaign_name", safe(campaign.name)),
        *kind,
        ("campaign_status", campaign.status),
        ("purpose", f"{campaign.purpose.code} ({campaign.purpose.kind})"),
        ("content_sha256", campaign_content_hash(campaign)),
        ("content_hashed_fields", " ".join(sorted(content))),
        ("author", campaign.created_by.email),
        ("created_at", exports.iso_utc(campaign.created_at)),
        ("approved_by", campaign.approved_by.email if campaign.approved_by else ""),
        ("approved_at", exports.iso_utc(campaign.approved_at)),
        ("scheduled_for", exports.iso_utc(campaign.scheduled_for)),
        ("schedule_timezone", campaign.schedule_timezone),
        # A journey's step campaign: when it opened for deliveries (its journey version's approval).
        ("launched_at", exports.iso_utc(campaign.launched_at)),
        ("finished_at", exports.iso_utc(campaign.finished_at)),
    ]


def _csv_trailer(totals: Counter) -> list[list]:
    audience = sum(totals[status] for status in Delivery.Status.values)
    lines = [["# total: audience", audience]]
    lines += [[f"# total: {status}", totals[status]] for status in Delivery.Status.values]
    lines.append(["# total: sent_without_covering_authorization", totals["sent_without_covering_authorization"]])
    return lines


def _csv_content(meta: exports.ReportMeta, campaign_id: int) -> Iterator[str]:
    """Lazy: nothing is read until the server asks for the first piece; then the campaign and its rows from
    one snapshot, and at the end the totals counted from exactly the rows written."""
    totals: Counter = Counter()
    with exports.report_snapshot():
        yield from exports.csv_stream(
            preamble=exports.csv_preamble(meta, _csv_preamble_facts(_campaign(campaign_id))),
            header=HEADER,
            rows=_csv_rows(campaign_id, totals),
            trailer=lambda: _csv_trailer(totals),
            times_as_text=True,
        )


def campaign_evidence_csv(meta: exports.ReportMeta, *, campaign_id: int):
    return exports.csv_response(meta, subject=f"campaign-{campaign_id}", content=_csv_content(meta, campaign_id))


def _row_dict(values: tuple) -> dict:
    """A delivery row for the PDF template, by column name."""
    row = dict(zip(HEADER, values))
    for name, column in zip(HEADER, _COLUMNS):
        if column in _TIME_COLUMNS and row[name]:
            row[name] = datetime.fromisoformat(row[name])
    row["block_reason_label"] = BLOCK_REASON_LABELS.get(row["block_reason"], row["block_reason"])
    return row


def _rows(campaign_id: int, **filters) -> exports.Limited:
    # One row past the limit tells the table that there were more.
    rows = campaign_evidence_rows(campaign_id=campaign_id, limit=exports.PDF_TABLE_ROW_LIMIT + 1, **filters)
    return exports.Limited(_row_dict(values) for values in rows)


def campaign_evidence_pdf(meta: exports.ReportMeta, *, campaign_id: int):
    with exports.report_snapshot():
        return _pdf(meta, campaign_id)


def _pdf(meta: exports.ReportMeta, campaign_id: int):
    facts = campaign_evidence_facts(campaign_id=campaign_id)
    context = {
        "facts": facts,
        "campaign": facts.campaign,
        "sent_rows": _rows(campaign_id, status=Delivery.Status.SENT),
        "excluded_rows": _rows(campaign_id, status=Delivery.Status.BLOCKED),
        "other_rows": _rows(campaign_id, only=Q(status__in=[Delivery.Status.FAILED, Delivery.Status.QUEUED])),
        "bounce_rows": _rows(campaign_id, only=Q(bounced_at__isnull=False) | Q(complained_at__isnull=False)),
        "unsubscribe_rows": _rows(campaign_id, only=_unsubscribed()),
        "grounds": GROUNDS,
    }
    return exports.pdf_response(
        meta, subject=f"campaign-{campaign_id}", template="reports/campaign_evidence.html", context=context
    )
