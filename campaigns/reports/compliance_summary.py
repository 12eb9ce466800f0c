"""Compliance summary for a period: authorizations signed, revoked and expired; how fast revocations took
effect; sends blocked by reason, campaign and journey messages apart; sends without a covering authorization (computed, R-SEND-COVERED); staff
access to patient data by user (R-MIN-NECESSARY, R-SEC-AUDIT); second-factor failures and locked accounts
(R-SEC-MFA); and what the last audit verify found when it held every delivery row against the sealed batch event
that recorded it (R-SEC-INTEGRITY, campaigns.delivery_verification).

Every figure is counted from stored rows when the report is made; none is asserted. The rows are a long table
(section, measure, breakdown, value) so that the CSV is one table a spreadsheet can pivot.

Revocation to effect (R-REVOKE-ANYTIME). Our policy is that a revocation takes effect when it commits: the
sender re-checks coverage under a lock that a revocation waits for (ADR 0001), so by construction the latency
is zero. The report measures it instead of assuming it: for each revocation in the period, the messages sent
under the revoked authorization at or after the revocation's time are violations, and the revocation's latency
is the time from the revocation to the last such message (zero when there is none). The distribution of the
latencies is printed; every revocation should fall in "took effect at commit".
"""
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import roles
from audit import actions
from audit.models import AuditEvent
from audit.selectors import audit_verification_last
from campaigns import delivery_verification
from campaigns.models import Campaign, Delivery
from campaigns.reports import exports
from campaigns.selectors.coverage import GROUNDS, sent_without_coverage_counts
from consent.models import Authorization, AuthorizationDefect, ExpiryEvent, Revocation

# Audit actions that are a staff member's access to patient-level data.
PHI_ACCESS_ACTIONS = {
    actions.PATIENT_SEARCHED: gettext_lazy("Searched for a patient"),
    actions.PATIENT_VIEWED: gettext_lazy("Opened a patient record"),
    actions.PATIENT_DOCUMENT_DOWNLOADED: gettext_lazy("Downloaded a signed copy or scan"),
    actions.AUTHORIZATION_FHIR_EXPORTED: gettext_lazy("Exported a FHIR Consent"),
    actions.CAMPAIGN_EVIDENCE_VIEWED: gettext_lazy("Viewed a campaign's patient-level evidence"),
    actions.PATIENT_IMPORT_PREVIEWED: gettext_lazy("Previewed a patient import"),
    actions.PATIENT_IMPORT_STARTED: gettext_lazy("Imported patients"),
    actions.PATIENT_EVENT_IMPORT_CHECKED: gettext_lazy("Checked a file of care events"),
    actions.PATIENT_EVENTS_IMPORTED: gettext_lazy("Imported care events"),
    actions.FHIR_IMPORTED: gettext_lazy("Imported FHIR Consents"),
    actions.REPORT_EXPORTED: gettext_lazy("Exported a compliance report"),
    actions.AUDIT_PATIENT_HISTORY_VIEWED: gettext_lazy("Opened a patient's audit history"),
}
# Audit actions that are a failed second factor of a staff account.
MFA_FAILURE_ACTIONS = {
    actions.MFA_VERIFICATION_FAILED: gettext_lazy("Wrong code or refused passkey at sign-in"),
    actions.MFA_REENTRY_FAILED: gettext_lazy("Wrong code when re-entered to approve, send or export"),
    actions.MFA_ENROLLMENT_FAILED: gettext_lazy("Wrong first code when enrolling an authenticator"),
}
LATENCY_BUCKETS = [
    ("at_commit", gettext_lazy("Took effect at commit: nothing sent under it afterwards")),
    ("within_1_minute", gettext_lazy("A message was sent under it up to 1 minute later")),
    ("within_1_hour", gettext_lazy("A message was sent under it up to 1 hour later")),
    ("within_48_hours", gettext_lazy("A message was sent under it up to 48 hours later")),
    ("after_48_hours", gettext_lazy("A message was sent under it more than 48 hours later")),
]

HEADER = ["section", "measure", "breakdown", "value"]


@dataclass(frozen=True)
class Period:
    """Whole days in the organisation's time zone, as [start, end) instants."""

    first_day: date
    last_day: date
    start: datetime
    end: datetime
    zone: str

    @classmethod
    def of_days(cls, first_day: date, last_day: date) -> "Period":
        zone = ZoneInfo(settings.TIME_ZONE)
        return cls(
            first_day=first_day,
            last_day=last_day,
            start=datetime.combine(first_day, time.min, tzinfo=zone),
            end=datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=zone),
            zone=settings.TIME_ZONE,
        )

    def filters(self) -> list[tuple[str, str]]:
        return [
            (
                gettext("Period"),
                gettext("%(first)s to %(last)s, both days included (days in %(zone)s)")
                % {"first": self.first_day.isoformat(), "last": self.last_day.isoformat(), "zone": self.zone},
            ),
            (
                gettext("Period in UTC"),
                gettext("from %(start)s up to %(end)s (excluded)")
                % {"start": exports.utc_text(self.start), "end": exports.utc_text(self.end)},
            ),
        ]

    def q(self, field: str) -> Q:
        return Q(**{f"{field}__gte": self.start, f"{field}__lt": self.end})


@dataclass
class Line:
    section: str
    measure: str
    breakdown: str
    value: object

    def as_row(self) -> list:
        return [self.section, self.measure, self.breakdown, self.value]


def _authorizations(period: Period) -> Iterator[Line]:
    section = "authorizations"
    signed = Authorization.objects.filter(period.q("signed_at"))
    yield Line(section, "signed", "", signed.count())
    for code, n in signed.values_list("purpose__code").annotate(n=Count("id")).order_by("purpose__code"):
        yield Line(section, "signed by purpose", code, n)
    for channel, n in signed.values_list("channel").annotate(n=Count("id")).order_by("channel"):
        yield Line(section, "signed by channel", channel, n)
    revoked = Revocation.objects.filter(period.q("revoked_at"))
    yield Line(section, "revoked", "", revoked.count())
    for channel, n in revoked.values_list("channel").annotate(n=Count("id")).order_by("channel"):
        yield Line(section, "revoked by channel", channel, n)
    # An expiry date inside the period that has passed by now; an expiry event that occurred in the period.
    expired = Authorization.objects.filter(period.q("expires_at"), expires_at__lte=timezone.now())
    yield Line(section, "expired (expiry date reached)", "", expired.count())
    yield Line(section, "ended by expiry event", "", ExpiryEvent.objects.filter(period.q("occurred_at")).count())
    defects = AuthorizationDefect.objects.filter(period.q("recorded_at"))
    yield Line(section, "defects recorded", "", defects.count())
    for reason, n in defects.values_list("reason").annotate(n=Count("id")).order_by("reason"):
        yield Line(section, "defects recorded by reason", reason, n)


def _latency_bucket(latency: timedelta | None) -> str:
    if latency is None:
        return "at_commit"
    if latency <= timedelta(minutes=1):
        return "within_1_minute"
    if latency <= timedelta(hours=1):
        return "within_1_hour"
    if latency <= timedelta(hours=48):
        return "within_48_hours"
    return "after_48_hours"


def _revocation_effect(period: Period) -> Iterator[Line]:
    section = "revocation to effect"
    after = Delivery.objects.filter(
        authorization_id=OuterRef("authorization_id"),
        status=Delivery.Status.SENT,
        sent_at__gte=OuterRef("revoked_at"),
    )
    revocations = (
        Revocation.objects.filter(period.q("revoked_at"))
        .annotate(
            violations=Coalesce(
                Subquery(after.order_by().values("authorization_id").annotate(n=Count("id")).values("n")), 0
            ),
            last_violation=Subquery(after.order_by().values("authorization_id").annotate(m=Max("sent_at")).values("m")),
            blocked_later=Exists(
                Delivery.objects.filter(
                    status=Delivery.Status.BLOCKED,
                    block_reason=Delivery.BlockReason.REVOKED,
                    patient_id=OuterRef("authorization__patient_id"),
                    campaign__purpose_id=OuterRef("authorization__purpose_id"),
                )
            ),
        )
        .values_list("channel", "revoked_at", "violations", "last_violation", "blocked_later")
    )
    total = violations = blocked_later = 0
    worst = timedelta(0)
    buckets: Counter = Counter()
    by_channel: Counter = Counter()
    violations_by_channel: Counter = Counter()
    for channel, revoked_at, n, last, blocked in revocations.iterator(chunk_size=exports.CURSOR_CHUNK_SIZE):
        total += 1
        by_channel[channel] += 1
        latency = (last - revoked_at) if last is not None else None
        buckets[_latency_bucket(latency)] += 1
        violations += n
        violations_by_channel[channel] += n
        blocked_later += bool(blocked)
        if latency is not None and latency > worst:
            worst = latency
    yield Line(section, "revocations in the period", "", total)
    yield Line(section, "messages sent under a revoked authorization at or after its revocation", "", violations)
    for key, label in LATENCY_BUCKETS:
        yield Line(section, "revocations by latency", label, buckets[key])
    yield Line(section, "longest latency (seconds)", "", round(worst.total_seconds(), 3))
    for channel in sorted(by_channel):
        yield Line(section, "revocations by channel", channel, by_channel[channel])
        yield Line(section, "violations by channel", channel, violations_by_channel[channel])
    yield Line(section, "revocations followed by a send attempt blocked as revoked", "", blocked_later)


# Messages by what sent them: a campaign's, or a journey's send step (Campaign.Kind.JOURNEY_STEP).
MESSAGE_KINDS = [
    (Campaign.Kind.CAMPAIGN, "campaign messages"),
    (Campaign.Kind.JOURNEY_STEP, "journey messages"),
]


def _sends(period: Period) -> Iterator[Line]:
    """Every message counted once in the totals, then split by kind (campaign or journey message): the kinds'
    figures add up to the totals."""
    section = "sends"
    yield Line(
        section,
        "campaigns launched",
        "",
        Campaign.objects.filter(period.q("launched_at"), kind=Campaign.Kind.CAMPAIGN).count(),
    )
    sent = Delivery.objects.filter(period.q("sent_at"), status=Delivery.Status.SENT)
    sent_by_kind = dict(sent.values_list("campaign__kind").annotate(n=Count("id")).order_by())
    yield Line(section, "messages sent", "", sum(sent_by_kind.values()))
    for kind, label in MESSAGE_KINDS:
        yield Line(section, f"{label} sent", "", sent_by_kind.get(kind, 0))
    uncovered = sent_without_coverage_counts(Delivery.objects.filter(period.q("sent_at")))
    yield Line(section, "sent without a covering authorization (must be 0)", "", uncovered["total"])
    for name, label in GROUNDS.items():
        yield Line(section, "sent without a covering authorization by ground", label, uncovered[name])
    # A blocked delivery is dated by its creation: the launch that tried it, or for a journey message the scanner
    # pass that reached its step (a delivery blocked at send time keeps no time of its own).
    blocked = Delivery.objects.filter(period.q("created_at"), status=Delivery.Status.BLOCKED)
    by_kind_and_reason = list(
        blocked.values_list("campaign__kind", "block_reason").annotate(n=Count("id")).order_by()
    )
    reasons: Counter = Counter()
    for _, reason, n in by_kind_and_reason:
        reasons[reason] += n
    yield Line(section, "sends blocked", "", sum(reasons.values()))
    for reason, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        yield Line(section, "sends blocked by reason", reason, n)
    for kind, label in MESSAGE_KINDS:
        of_kind = Counter({reason: n for k, reason, n in by_kind_and_reason if k == kind})
        yield Line(section, f"{label} blocked", "", sum(of_kind.values()))
        for reason, n in sorted(of_kind.items(), key=lambda item: (-item[1], item[0])):
            yield Line(section, f"{label} blocked by reason", reason, n)
    failed = Delivery.objects.filter(period.q("created_at"), status=Delivery.Status.FAILED).count()
    yield Line(section, "refused by the mail server", "", failed)
    bounces = Delivery.objects.filter(period.q("bounced_at"))
    for bounce_type, n in bounces.values_list("bounce_type").annotate(n=Count("id")).order_by("bounce_type"):
        yield Line(section, "bounces by type", bounce_type or "unknown", n)
    yield Line(section, "spam complaints", "", Delivery.objects.filter(period.q("complained_at")).count())


def _staff_access(period: Period) -> Iterator[Line]:
    section = "staff access to patient data"
    events = AuditEvent.objects.filter(period.q("occurred_at"), action__in=list(PHI_ACCESS_ACTIONS), actor__isnull=False)
    rows = (
        events.values_list("actor__email", "action")
        .annotate(n=Count("id"))
        .order_by("actor__email", "action")
    )
    total = 0
    for email, action, n in rows.iterator(chunk_size=exports.CURSOR_CHUNK_SIZE):
        total += n
        yield Line(section, email, action, n)
    yield Line(section, "all staff", "all actions", total)


def _second_factor(period: Period) -> Iterator[Line]:
    section = "second-factor failures"
    events = AuditEvent.objects.filter(period.q("occurred_at"), action__in=list(MFA_FAILURE_ACTIONS))
    total = 0
    for email, action, n in (
        events.values_list("actor__email", "action").annotate(n=Count("id")).order_by("actor__email", "action")
    ):
        total += n
        yield Line(section, email or "unknown account", action, n)
    yield Line(section, "all staff", "all second-factor failures", total)
    failed_sign_ins = AuditEvent.objects.filter(period.q("occurred_at"), action=actions.ACCOUNT_SIGN_IN_FAILED).count()
    yield Line("sign-in failures", "wrong password or unknown account (account.sign_in_failed)", "", failed_sign_ins)
    for action in (actions.PATIENT_CODE_THROTTLED, actions.PATIENT_CODE_LOCKED):
        n = AuditEvent.objects.filter(period.q("occurred_at"), action=action).count()
        yield Line("sign-in failures", f"patient emailed codes ({action})", "", n)


@dataclass
class LockedDevice:
    email: str
    device: str
    failures: int
    locked_until: datetime | None


def locked_devices() -> list[LockedDevice]:
    """Second-factor devices that django-otp throttles now (each wrong code doubles the wait), as the library
    itself decides it (verify_is_allowed)."""
    found = []
    for model, kind in ((TOTPDevice, "authenticator app"), (StaticDevice, "recovery codes")):
        for device in model.objects.filter(throttling_failure_count__gt=0).select_related("user").order_by("id"):
            allowed, data = device.verify_is_allowed()
            if not allowed:
                found.append(
                    LockedDevice(
                        email=device.user.email,
                        device=kind,
                        failures=device.throttling_failure_count,
                        locked_until=(data or {}).get("locked_until"),
                    )
                )
    return found


def _locked_accounts() -> Iterator[Line]:
    section = "locked accounts (at generation)"
    locked = locked_devices()
    yield Line(section, "second factor throttled now", "", len(locked))
    for device in locked:
        until = exports.utc_text(device.locked_until) if device.locked_until else ""
        yield Line(section, device.email, f"{device.device}: {device.failures} wrong codes in a row, locked until {until}",
                   1)
    inactive = (
        get_user_model()
        .objects.filter(is_active=False, groups__name__in=roles.ALL)
        .values_list("email", flat=True)
        .distinct()
        .order_by("email")
    )
    inactive = list(inactive)
    yield Line(section, "staff accounts deactivated", "", len(inactive))
    for email in inactive:
        yield Line(section, email, "deactivated", 1)


VERIFICATION_SECTION = "delivery verification"
LAST_VERIFIED = "last verified (audit.verified event)"
VERIFICATION_COUNTS = [
    ("compared", "deliveries compared with their sealed record"),
    ("differing", "deliveries that differ from their sealed record"),
    ("mismatches", "mismatches (must be 0)"),
    ("legacy", "recorded before per-message evidence (outcome compared only)"),
    ("pending", "sent in a batch the verify did not cover yet"),
    ("archived", "sent before the archived part of the trail"),
]


def _delivery_verification() -> Iterator[Line]:
    """What the last audit verify found (not the period's: the whole trail, at that verify), from the
    audit.verified event it wrote: the audit_verify command and the nightly task compare, the report shows."""
    section = VERIFICATION_SECTION
    event = audit_verification_last(check=delivery_verification.NAME)
    if event is None:
        yield Line(section, LAST_VERIFIED, "never", 0)
        return
    check = event.details["checks"][delivery_verification.NAME]
    yield Line(section, LAST_VERIFIED, exports.iso_utc(event.occurred_at), event.pk)
    chain = (
        f"intact through sequence {event.details.get('through_sequence')}"
        if event.details.get("ok")
        else f"broken at sequence {event.details.get('break_sequence')} ({event.details.get('break_reason')})"
    )
    yield Line(section, "hash chain at that verify", chain, 1 if event.details.get("ok") else 0)
    if check.get("error"):
        yield Line(section, "comparison did not complete", check["error"], 1)
    for key, measure in VERIFICATION_COUNTS:
        yield Line(section, measure, "", check.get(key, 0))
    for entry in check.get("named", []):
        yield Line(section, "mismatch", delivery_verification.mismatch_line(entry), 1)
    unnamed = check.get("mismatches", 0) - len(check.get("named", []))
    if unnamed > 0:
        yield Line(section, "mismatches not named (the verify names the first ones only)", "", unnamed)


def compliance_summary_lines(*, period: Period) -> Iterator[Line]:
    """Every line of the summary, section by section (a few aggregate queries each)."""
    yield from _authorizations(period)
    yield from _revocation_effect(period)
    yield from _sends(period)
    yield from _delivery_verification()
    yield from _staff_access(period)
    yield from _second_factor(period)
    yield from _locked_accounts()


def _csv_content(meta: exports.ReportMeta, period: Period) -> Iterator[str]:
    with exports.report_snapshot():
        yield from exports.csv_stream(
            preamble=exports.csv_preamble(
                meta, [("period_start", exports.iso_utc(period.start)), ("period_end", exports.iso_utc(period.end))]
            ),
            header=HEADER,
            rows=(line.as_row() for line in compliance_summary_lines(period=period)),
        )


def compliance_summary_csv(meta: exports.ReportMeta, *, period: Period):
    """Lazy like every report CSV: read from one snapshot as the file is sent."""
    return exports.csv_response(meta, subject=_subject(period), content=_csv_content(meta, period))


def _subject(period: Period) -> str:
    return f"{period.first_day.isoformat()}-to-{period.last_day.isoformat()}"


def _verification_context(lines: list[Line]) -> dict:
    """The delivery verification section's lines, for the PDF."""
    by_measure = {line.measure: line for line in lines if line.measure != "mismatch"}
    last = by_measure[LAST_VERIFIED]
    return {
        "verified": last.value != 0,
        "at": last.breakdown,
        "event_id": last.value,
        "chain": by_measure["hash chain at that verify"].breakdown if "hash chain at that verify" in by_measure else "",
        "error": by_measure["comparison did not complete"].breakdown if "comparison did not complete" in by_measure else "",
        "counts": {key: by_measure[measure].value if measure in by_measure else 0 for key, measure in VERIFICATION_COUNTS},
        "rows": [
            (key, measure, by_measure[measure].value if measure in by_measure else 0)
            for key, measure in VERIFICATION_COUNTS
        ],
        "named": [line.breakdown for line in lines if line.measure == "mismatch"],
        "unnamed": next((line.value for line in lines if line.measure.startswith("mismatches not named")), 0),
    }


def compliance_summary_pdf(meta: exports.ReportMeta, *, period: Period):
    with exports.report_snapshot():
        lines = list(compliance_summary_lines(period=period))
        locked = locked_devices()
    sections: dict[str, list[Line]] = {}
    for line in lines:
        sections.setdefault(line.section, []).append(line)

    def value(section: str, measure: str, breakdown: str = "", default=0):
        return next(
            (line.value for line in sections.get(section, []) if line.measure == measure and line.breakdown == breakdown),
            default,
        )

    def breakdown(section: str, measure: str) -> list[tuple[str, object]]:
        return [(line.breakdown, line.value) for line in sections.get(section, []) if line.measure == measure]

    staff = [line for line in sections.get("staff access to patient data", []) if line.measure != "all staff"]
    mfa = [line for line in sections.get("second-factor failures", []) if line.measure != "all staff"]
    context = {
        "period": period,
        "authorizations": {
            "signed": value("authorizations", "signed"),
            "signed_by_purpose": breakdown("authorizations", "signed by purpose"),
            "signed_by_channel": breakdown("authorizations", "signed by channel"),
            "revoked": value("authorizations", "revoked"),
            "revoked_by_channel": breakdown("authorizations", "revoked by channel"),
            "expired": value("authorizations", "expired (expiry date reached)"),
            "ended_by_event": value("authorizations", "ended by expiry event"),
            "defects": value("authorizations", "defects recorded"),
            "defects_by_reason": breakdown("authorizations", "defects recorded by reason"),
        },
        "revocation": {
            "total": value("revocation to effect", "revocations in the period"),
            "violations": value(
                "revocation to effect", "messages sent under a revoked authorization at or after its revocation"
            ),
            "buckets": breakdown("revocation to effect", "revocations by latency"),
            "worst": value("revocation to effect", "longest latency (seconds)"),
            "by_channel": list(
                zip(
                    breakdown("revocation to effect", "revocations by channel"),
                    breakdown("revocation to effect", "violations by channel"),
                )
            ),
            "blocked_later": value("revocation to effect", "revocations followed by a send attempt blocked as revoked"),
        },
        "sends": {
            "campaigns": value("sends", "campaigns launched"),
            "sent": value("sends", "messages sent"),
            "uncovered": value("sends", "sent without a covering authorization (must be 0)"),
            "uncovered_by_ground": breakdown("sends", "sent without a covering authorization by ground"),
            "blocked": value("sends", "sends blocked"),
            "blocked_by_reason": [
                (dict(Delivery.BlockReason.choices).get(reason, reason), n)
                for reason, n in breakdown("sends", "sends blocked by reason")
            ],
            "failed": value("sends", "refused by the mail server"),
            "by_kind": [
                {
                    "label": label,
                    "sent": value("sends", f"{label} sent"),
                    "blocked": value("sends", f"{label} blocked"),
                    "blocked_by_reason": [
                        (dict(Delivery.BlockReason.choices).get(reason, reason), n)
                        for reason, n in breakdown("sends", f"{label} blocked by reason")
                    ],
                }
                for _, label in MESSAGE_KINDS
            ],
            "bounces": breakdown("sends", "bounces by type"),
            "complaints": value("sends", "spam complaints"),
        },
        "verification": _verification_context(sections.get(VERIFICATION_SECTION, [])),
        "staff": [(line.measure, PHI_ACCESS_ACTIONS.get(line.breakdown, line.breakdown), line.breakdown, line.value)
                  for line in staff],
        "staff_total": value("staff access to patient data", "all staff", "all actions"),
        "mfa": [(line.measure, MFA_FAILURE_ACTIONS.get(line.breakdown, line.breakdown), line.breakdown, line.value)
                for line in mfa],
        "mfa_total": value("second-factor failures", "all staff", "all second-factor failures"),
        "sign_in": sections.get("sign-in failures", []),
        "locked": locked,
        "inactive": [line.measure for line in sections.get("locked accounts (at generation)", [])
                     if line.breakdown == "deactivated"],
        "latency_buckets": LATENCY_BUCKETS,
        "staff_actions": sorted(PHI_ACCESS_ACTIONS),
    }
    return exports.pdf_response(
        meta, subject=_subject(period), template="reports/compliance_summary.html", context=context
    )
