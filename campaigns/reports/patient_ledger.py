"""Patient consent ledger: for one patient, every authorization with its form version and signature evidence
(R-AUTH-ESIGN, R-AUTH-CORE-6), everything that ended one (revocations with their channel, expiry events,
expiry dates passed, defects: R-AUTH-DEFECTIVE), and every message of every campaign and every journey that was
sent to them or blocked (R-SEND-EVIDENCE), in time order.

The signature evidence is stored encrypted (R-SEC-ENCRYPT-REST); it is decrypted here as on the staff patient
record, for compliance officers and administrators only, and the export that reads it is audited
(`report.exported` with the patient's id, never their data). The patient is identified by their internal id and
the record number the staff patient record shows.
"""
import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Count
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy

from campaigns.models import Campaign, Delivery
from campaigns.reports import exports
from campaigns.selectors.campaigns import journey_message_of
from campaigns.selectors.coverage import sent_without_coverage_counts
from consent.models import AuthorizationDefect, Patient
from consent.selectors.patients import STATE_LABELS, AuthorizationRow, patient_authorization_rows

HEADER = [
    "occurred_at",
    "event",
    "authorization_id",
    "purpose",
    "form_version",
    "channel",
    "detail",
    "signer_name",
    "signed_by_representative",
    "representative_authority",
    "text_sha256",
    "signed_ip",
    "user_agent",
    "expires_at",
    "expiry_event",
    "recorded_by",
    "campaign_id",
    "campaign_name",
    "delivery_id",
    "delivery_status",
    "block_reason",
    "checked_at",
    "smtp_code",
    "message_kind",
    "journey_message",
]

EVENT_LABELS = {
    "authorization_signed": gettext_lazy("Authorization signed"),
    "authorization_revoked": gettext_lazy("Authorization revoked"),
    "expiry_event_occurred": gettext_lazy("Expiry event occurred"),
    "authorization_expired": gettext_lazy("Authorization expired"),
    "defect_recorded": gettext_lazy("Defect recorded"),
    "message_sent": gettext_lazy("Message sent"),
    "message_blocked": gettext_lazy("Message blocked"),
    "message_failed": gettext_lazy("Message refused by the mail server"),
    "message_queued": gettext_lazy("Message waiting to be sent"),
}
_DELIVERY_EVENT = {
    Delivery.Status.SENT: "message_sent",
    Delivery.Status.BLOCKED: "message_blocked",
    Delivery.Status.FAILED: "message_failed",
    Delivery.Status.QUEUED: "message_queued",
}
_DEFECT_LABELS = dict(AuthorizationDefect.Reason.choices)
_BLOCK_LABELS = dict(Delivery.BlockReason.choices)


def _email(user) -> str:
    return user.email if user is not None else ""


def _authorization_events(rows: list[AuthorizationRow]) -> list[dict]:
    """The consent events of the patient's authorizations, oldest first (a handful of rows per patient)."""
    now = timezone.now()
    safe = exports.spreadsheet_safe
    events = []
    for row in rows:
        a = row.authorization
        base = {
            "authorization_id": a.pk,
            "purpose": a.purpose.code,
            "form_version": a.form_version.version if a.form_version else "",
        }
        events.append(
            base
            | {
                "occurred_at": a.signed_at,
                "event": "authorization_signed",
                "channel": a.channel,
                "detail": f"state at generation: {row.state_label}",
                "signer_name": safe(a.signature_name),
                "signed_by_representative": a.signed_by_representative,
                "representative_authority": safe(a.representative_authority),
                "text_sha256": a.text_hash,
                "signed_ip": a.signed_ip,
                "user_agent": safe(a.user_agent),
                "expires_at": a.expires_at,
                "expiry_event": safe(a.expiry_event),
                "recorded_by": _email(a.recorded_by),
            }
        )
        revocation = getattr(a, "revocation", None)
        if revocation is not None:
            events.append(
                base
                | {
                    "occurred_at": revocation.revoked_at,
                    "event": "authorization_revoked",
                    "channel": revocation.channel,
                    "detail": "written revocation scanned" if revocation.scan else "",
                    "recorded_by": _email(revocation.recorded_by),
                }
            )
        expiry = getattr(a, "expiry_record", None)
        if expiry is not None:
            events.append(
                base
                | {
                    "occurred_at": expiry.occurred_at,
                    "event": "expiry_event_occurred",
                    "channel": expiry.source,
                    "detail": f"recorded {exports.iso_utc(expiry.recorded_at)}",
                    "expiry_event": safe(a.expiry_event),
                    "recorded_by": _email(expiry.recorded_by),
                }
            )
        if a.expires_at is not None and a.expires_at <= now:
            events.append(base | {"occurred_at": a.expires_at, "event": "authorization_expired"})
        for defect in a.defects.all():
            events.append(
                base
                | {
                    "occurred_at": defect.recorded_at,
                    "event": "defect_recorded",
                    "detail": _DEFECT_LABELS.get(defect.reason, defect.reason),
                    "recorded_by": _email(defect.recorded_by),
                }
            )
    events.sort(key=lambda event: (event["occurred_at"], event["authorization_id"]))
    return events


def _journey_label(kind: str, name: str) -> str:
    journey = journey_message_of(Campaign(kind=kind, name=name))
    return journey.label if journey is not None else ""


def _delivery_events(patient_id: int) -> Iterator[dict]:
    """Every delivery of every campaign and every journey message to this patient, in time order (a sent one at
    its send), from a server-side cursor. A journey's message is labelled as one ("Journey message: <journey> ·
    step N", message_kind journey_step)."""
    deliveries = (
        Delivery.objects.filter(patient_id=patient_id)
        .annotate(moment=Coalesce("sent_at", "created_at"))
        .order_by("moment", "id")
        .values_list(
            "moment", "id", "status", "block_reason", "authorization_id", "campaign_id", "campaign__name",
            "campaign__purpose__code", "authorization__form_version__version", "checked_at", "smtp_code",
            "campaign__kind",
        )
    )
    for (
        moment, pk, status, reason, authorization_id, campaign_id, name, purpose, version, checked_at, smtp_code,
        kind,
    ) in deliveries.iterator(chunk_size=exports.CURSOR_CHUNK_SIZE):
        yield {
            "occurred_at": moment,
            "event": _DELIVERY_EVENT.get(status, status),
            "authorization_id": authorization_id or "",
            "purpose": purpose,
            "form_version": version or "",
            "detail": _BLOCK_LABELS.get(reason, reason) if reason else "",
            "campaign_id": campaign_id,
            "campaign_name": exports.spreadsheet_safe(name),
            "delivery_id": pk,
            "delivery_status": status,
            "block_reason": reason,
            # A sent message's own times (ADR 0010): occurred_at is when the server accepted it, checked_at when
            # the coverage check that allowed it ran. A refused one keeps the server's reply code.
            "checked_at": checked_at,
            "smtp_code": smtp_code if smtp_code is not None else "",
            "message_kind": kind,
            "journey_message": exports.spreadsheet_safe(_journey_label(kind, name)),
        }


def patient_ledger_rows(*, patient_id: int, authorization_rows: list[AuthorizationRow] | None = None) -> Iterator[dict]:
    """The whole ledger in time order: consent events merged with the message stream (lazily: the messages are
    read from the cursor as the ledger is written)."""
    if authorization_rows is None:
        authorization_rows = patient_authorization_rows(patient_id=patient_id)
    return heapq.merge(
        _authorization_events(authorization_rows), _delivery_events(patient_id), key=lambda event: event["occurred_at"]
    )


@dataclass
class PatientFacts:
    patient: Patient
    authorizations: list[AuthorizationRow]
    delivery_counts: dict[str, int]
    uncovered: dict[str, int]


def patient_ledger_facts(*, patient_id: int) -> PatientFacts:
    patient = Patient.objects.get(pk=patient_id)
    deliveries = Delivery.objects.filter(patient_id=patient_id)
    counts = dict(deliveries.values_list("status").annotate(n=Count("id")).order_by())
    return PatientFacts(
        patient=patient,
        authorizations=patient_authorization_rows(patient_id=patient_id),
        delivery_counts=counts,
        uncovered=sent_without_coverage_counts(deliveries),
    )


def _csv_content(meta: exports.ReportMeta, patient_id: int) -> Iterator[str]:
    with exports.report_snapshot():
        facts = patient_ledger_facts(patient_id=patient_id)
        preamble = [
            ("patient_id", facts.patient.pk),
            ("record_number", exports.spreadsheet_safe(facts.patient.external_id)),
            ("authorizations", len(facts.authorizations)),
            ("messages_sent", facts.delivery_counts.get(Delivery.Status.SENT, 0)),
            ("sent_without_covering_authorization", facts.uncovered["total"]),
        ]
        rows = (
            [row.get(column, "") for column in HEADER]
            for row in patient_ledger_rows(patient_id=patient_id, authorization_rows=facts.authorizations)
        )
        yield from exports.csv_stream(preamble=exports.csv_preamble(meta, preamble), header=HEADER, rows=rows)


def patient_ledger_csv(meta: exports.ReportMeta, *, patient_id: int):
    """Lazy like every report CSV: read from one snapshot as the file is sent."""
    return exports.csv_response(meta, subject=f"patient-{patient_id}", content=_csv_content(meta, patient_id))


def patient_ledger_pdf(meta: exports.ReportMeta, *, patient_id: int):
    with exports.report_snapshot():
        facts = patient_ledger_facts(patient_id=patient_id)
        ledger = [
            row | {"label": EVENT_LABELS.get(row["event"], row["event"])}
            for row in _authorization_events(facts.authorizations)
        ]
        messages = exports.Limited(
            row | {"label": EVENT_LABELS.get(row["event"], row["event"])} for row in _delivery_events(patient_id)
        )
    context = {
        "facts": facts,
        "patient": facts.patient,
        "ledger": ledger,
        "messages": messages,
        "state_labels": STATE_LABELS,
    }
    return exports.pdf_response(
        meta, subject=f"patient-{patient_id}", template="reports/patient_ledger.html", context=context
    )
