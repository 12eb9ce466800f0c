"""Bounces and complaints reported after the mail server took a message (R-BOUNCE-SUPPRESS).

Two ways in, one service: the Amazon SES webhook (campaigns.views.webhooks, through django-anymail) and
delivery-status notifications read from a bounce mailbox (`manage.py bounces_read`, `bounce_report_parse`) both
call `delivery_bounce_record` with the Message-ID of the message that bounced, the address the report names, and
what happened:

- a hard bounce (SES "Permanent", a DSN whose Status is 5.x.x) marks the delivery and suppresses the address
  for every later marketing message;
- a soft bounce (SES "Transient" or "Undetermined", a failed DSN with a 4.x.x Status) marks the delivery; the
  third soft-bounced message to the same address within 30 days suppresses it ("soft_bounces");
- a spam complaint (SES "Complaint", an RFC 5965 abuse report) marks the delivery and suppresses the address.
  It does not revoke the authorization: a complaint is a click in a mail client, not the patient's written
  revocation (R-REVOKE-WRITTEN); the suppression already stops every marketing message to the address, for
  every purpose, and the patient can still revoke or sign in the portal.

A report is applied only when its Message-ID is one of ours (`<delivery-ID.TAG@DOMAIN>`, campaigns.sending.messages; or the
shape used before issue 11, `<delivery-ID@DOMAIN>`, when the row stored exactly that) for a sent
delivery AND the address it names is that delivery's patient's address: delivery ids are sequential, so a
forged report naming a guessed id alone must not suppress anybody. Reporting the same event twice (a provider's
retry, a mailbox read twice) changes nothing. Nothing here logs or audits an address (R-NO-PHI-LEAK).
"""
import email
import email.policy
import email.utils
import logging
import mailbox
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message
from enum import StrEnum
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from audit import actions
from audit.services import audit_record
from campaigns.models import Delivery
from campaigns.sending.messages import message_id_for, message_id_parts
from consent import crypto
from consent.models import Suppression
from consent.services.suppressions import suppression_record
from observability import metrics

logger = logging.getLogger(__name__)

SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_WINDOW = timedelta(days=30)

_STATUS = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}$")


class BounceKind(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"


class BounceResult(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # already recorded for this delivery: nothing changed
    UNKNOWN_MESSAGE = "unknown_message"  # not a Message-ID of ours, or no sent delivery has it
    RECIPIENT_MISMATCH = "recipient_mismatch"  # the report names another address than the delivery's patient's


# Message-IDs of messages sent before the install tag (issue 11): `<delivery-42@domain>`. Their reports are
# still applied, but only to a delivery whose stored Message-ID is exactly this one.
_LEGACY_MESSAGE_ID = re.compile(r"^<delivery-([0-9]{1,18})@[^@<>\s]+>$")


def _angled(message_id: str) -> str:
    value = (message_id or "").strip()
    return value if value.startswith("<") else f"<{value}>"


def delivery_id_from_message_id(message_id: str) -> int | None:
    """The delivery id in one of our Message-IDs (`<delivery-42.<tag>@domain>`, angle brackets optional), else
    None."""
    before, after = message_id_parts()
    value = _angled(message_id)
    if not (value[: len(before)].lower() == before.lower() and value[-len(after) :].lower() == after.lower()):
        return None
    number = value[len(before) : -len(after)]
    return int(number) if number.isascii() and number.isdigit() and len(number) < 19 else None


def _delivery_id_and_stored_message_id(message_id: str) -> tuple[int, str] | None:
    """(delivery id, the Message-ID its row must have stored) for one of our Message-IDs, current or legacy."""
    delivery_id = delivery_id_from_message_id(message_id)
    if delivery_id is not None:
        return delivery_id, message_id_for(delivery_id)
    legacy = _LEGACY_MESSAGE_ID.match(_angled(message_id))
    if legacy is None:
        return None
    return int(legacy.group(1)), _angled(message_id)


def status_code_clean(status: str | None) -> str:
    """An RFC 3463 status ("5.1.1") as reported, or "" for anything else (free text may carry an address)."""
    status = (status or "").strip()
    return status if _STATUS.match(status) else ""


def delivery_bounce_record(
    *, message_id: str, recipients: Iterable[str], kind: BounceKind, status: str = "", source: str
) -> BounceResult:
    """Record a bounce or complaint for the message with this Message-ID (see the module's docstring).

    `recipients`: the address(es) the report names for the recipient that bounced or complained (a DSN's
    Original-Recipient and Final-Recipient); one of them must be the delivery's patient's address.
    `status`: the RFC 3463 status code when the report gives one. `source`: "ses", "dsn" or "arf" (audit)."""
    kind = BounceKind(kind)
    ours = _delivery_id_and_stored_message_id(message_id)
    if ours is None:
        return BounceResult.UNKNOWN_MESSAGE
    delivery_id, stored_message_id = ours
    digests = {crypto.lookup_digest(address) for address in recipients if address and address.strip()}
    status = status_code_clean(status)
    with transaction.atomic(durable=True):
        # Lock order as everywhere: the delivery, then the suppression (consent), then the audit chain.
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("patient")
            .filter(pk=delivery_id, status=Delivery.Status.SENT, message_id__iexact=stored_message_id)
            .first()
        )
        if delivery is None:
            return BounceResult.UNKNOWN_MESSAGE
        if delivery.patient.email_digest not in digests:
            logger.warning("bounce report for delivery %s names another address; ignored", delivery.pk)
            return BounceResult.RECIPIENT_MISMATCH
        now = timezone.now()
        if kind == BounceKind.COMPLAINT:
            if delivery.complained_at is not None:
                return BounceResult.DUPLICATE
            delivery.complained_at = now
            delivery.save(update_fields=["complained_at"])
            reason = Suppression.Reason.COMPLAINT
        else:
            if delivery.bounce_type == BounceKind.HARD or delivery.bounce_type == kind:
                return BounceResult.DUPLICATE  # the same report again, or a soft one after a hard one
            delivery.bounced_at, delivery.bounce_type = now, kind.value
            delivery.save(update_fields=["bounced_at", "bounce_type"])
            reason = Suppression.Reason.HARD_BOUNCE if kind == BounceKind.HARD else None
        audit_record(
            actor=None,
            actor_role=actions.SYSTEM,
            action=actions.DELIVERY_COMPLAINED if kind == BounceKind.COMPLAINT else actions.DELIVERY_BOUNCED,
            object_type="delivery",
            object_id=delivery.pk,
            patient_id=delivery.patient_id,
            details={"kind": kind.value, "status": status, "source": source, "campaign_id": delivery.campaign_id},
        )
        if reason is None and _soft_bounce_count(email_digest=delivery.patient.email_digest, since=now) >= SOFT_BOUNCE_LIMIT:
            reason = Suppression.Reason.SOFT_BOUNCES
        if reason is not None:
            # The patient's address as stored: the report's spelling of it may differ in case.
            suppression_record(actor=None, email=delivery.patient.email, reason=reason, smtp_code=status)
    metrics.delivery_bounce_count(kind=kind.value, source=source)  # committed
    return BounceResult.RECORDED


def _soft_bounce_count(*, email_digest: str, since) -> int:
    """Messages to this address that soft-bounced within the window (each delivery counts once)."""
    return Delivery.objects.filter(
        patient__email_digest=email_digest,
        bounce_type=BounceKind.SOFT,
        bounced_at__gt=since - SOFT_BOUNCE_WINDOW,
    ).count()


# --- Reports that arrive by mail: RFC 3464 delivery-status notifications, RFC 5965 abuse reports ---------------


@dataclass(frozen=True)
class BounceReport:
    """One recipient's outcome, read from a report message."""

    message_id: str
    recipients: tuple[str, ...]
    kind: BounceKind
    status: str
    source: str  # "dsn" or "arf"


def _address(value) -> str:
    """The address of a DSN address field ("rfc822; jane@example.org"), or of a plain one."""
    text = str(value or "").strip()
    if ";" in text:
        address_type, _, text = text.partition(";")
        if address_type.strip().lower() != "rfc822":
            return ""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text if "@" in text else ""


def _field_blocks(part: Message) -> list[Message]:
    """The blocks of header-like fields of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else ""
    if part.get("Content-Transfer-Encoding", "").lower() in ("base64", "quoted-printable"):
        text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    blocks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [email.message_from_string(block + "\n", policy=email.policy.compat32) for block in blocks if block.strip()]


def _returned_headers(report: Message) -> Message | None:
    """The headers of the message that bounced, from the report's third part (message/rfc822 or
    text/rfc822-headers)."""
    for part in report.walk():
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
        if content_type == "text/rfc822-headers":
            text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
            return email.message_from_string(text.lstrip(), policy=email.policy.compat32)
    return None


def _message_id_of(report: Message, fields: Message | None) -> str:
    if fields is not None:
        for name in ("Original-Message-ID", "X-Original-Message-ID"):
            if fields.get(name):
                return str(fields[name]).strip()
    returned = _returned_headers(report)
    if returned is not None and returned.get("Message-ID"):
        return str(returned["Message-ID"]).strip()
    return ""


def _status_of(block: Message) -> str:
    status = str(block.get("Status", "")).strip().split(" ")[0]
    if status_code_clean(status):
        return status
    # No usable Status: the SMTP reply code in the Diagnostic-Code ("smtp; 550 ...") gives the class.
    match = re.match(r"\s*smtp\s*;\s*([245])\d\d\b", str(block.get("Diagnostic-Code", "")), re.IGNORECASE)
    return f"{match.group(1)}.0.0" if match else ""


def bounce_report_parse(raw: bytes) -> list[BounceReport]:
    """The bounces or complaints one report message states, or [] when it states none we act on.

    A DSN (multipart/report; report-type=delivery-status) gives one entry per recipient whose Action is
    "failed": Status 5.x.x is a hard bounce, 4.x.x a soft one. "delayed" is a warning (the MTA still tries)
    and counts for nothing. An abuse report (report-type=feedback-report, Feedback-Type abuse or fraud) is a
    complaint. The Message-ID comes from Original-Message-ID when present, else from the returned headers."""
    report = email.message_from_bytes(raw, policy=email.policy.compat32)
    if report.get_content_type() != "multipart/report":
        return []
    report_type = (report.get_param("report-type") or "").lower()
    parts = report.get_payload() if report.is_multipart() else []
    if report_type == "delivery-status":
        status_part = next((p for p in parts if p.get_content_type() == "message/delivery-status"), None)
        if status_part is None:
            return []
        blocks = _field_blocks(status_part)
        if not blocks:
            return []
        per_message, per_recipient = blocks[0], blocks[1:]
        message_id = _message_id_of(report, per_message)
        reports = []
        for block in per_recipient:
            if str(block.get("Action", "")).strip().lower() != "failed":
                continue
            status = _status_of(block)
            kind = {"5": BounceKind.HARD, "4": BounceKind.SOFT}.get(status[:1])
            if kind is None:
                continue
            addresses = tuple(
                address
                for address in (_address(block.get("Original-Recipient")), _address(block.get("Final-Recipient")))
                if address
            )
            reports.append(BounceReport(message_id, addresses, kind, status, "dsn"))
        return reports
    if report_type == "feedback-report":
        feedback_part = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
        if feedback_part is None:
            return []
        blocks = _field_blocks(feedback_part)
        fields = blocks[0] if blocks else None
        if fields is None or str(fields.get("Feedback-Type", "")).strip().lower() not in ("abuse", "fraud"):
            return []
        returned = _returned_headers(report)
        addresses = [_address(value) for value in fields.get_all("Original-Rcpt-To") or []]
        if returned is not None:
            addresses.append(_address(email.utils.parseaddr(str(returned.get("To", "")))[1]))
        message_id = _message_id_of(report, fields)
        return [BounceReport(message_id, tuple(a for a in addresses if a), BounceKind.COMPLAINT, "", "arf")]
    return []


def bounce_message_apply(raw: bytes) -> list[BounceResult]:
    """Parse one report message and record what it states; one result per bounced recipient it names."""
    return [_report_apply(report) for report in bounce_report_parse(raw)]


def _report_apply(report: BounceReport) -> BounceResult:
    return delivery_bounce_record(
        message_id=report.message_id,
        recipients=report.recipients,
        kind=report.kind,
        status=report.status,
        source=report.source,
    )


class BounceMailboxError(ValueError):
    """The path is not a mailbox we can read."""


def _mailbox_open(path: Path) -> mailbox.Mailbox:
    if path.is_dir():
        if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raise BounceMailboxError(f"{path} is a folder but not a Maildir (it needs cur/, new/ and tmp/).")
        return mailbox.Maildir(path, factory=None, create=False)
    if path.is_file():
        return mailbox.mbox(path, factory=None, create=False)
    raise BounceMailboxError(f"{path} does not exist.")


def bounce_mailbox_read(*, path: Path, remove: bool = False) -> Counter:
    """Apply every report in a Maildir or mbox (`manage.py bounces_read`, and `bounces_read_task` every few
    minutes when BOUNCE_MAILBOX is set). Counts: "reports", "other" (messages stating nothing we act on: left in
    place), "removed", and one count per BounceResult. With `remove`, the reports are deleted once applied."""
    box = _mailbox_open(path)
    counts: Counter = Counter()
    applied = []
    box.lock()
    try:
        for key in list(box.keys()):
            reports = bounce_report_parse(box.get_bytes(key))
            if not reports:
                counts["other"] += 1
                continue
            counts["reports"] += 1
            for report in reports:
                counts[_report_apply(report)] += 1
            applied.append(key)
        if remove:
            for key in applied:
                box.remove(key)
            box.flush()
            counts["removed"] = len(applied)
    finally:
        box.unlock()
        box.close()
    return counts
