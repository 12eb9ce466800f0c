"""Sends without a covering authorization, computed from the stored evidence (R-SEND-COVERED, R-SEND-EVIDENCE).

The number printed on every report as "must be zero" is counted here, from the delivery rows against the
authorizations and everything that ends one — never asserted. Each sent delivery carries two instants of its own,
in the database's clock (ADR 0010): `checked_at`, when the coverage check that allowed it ran, and `sent_at`,
when the mail server accepted it. It is uncovered when the authorization it names

- is missing (the database refuses this; counted anyway, in case a constraint was ever dropped),
- is for another patient, or for another purpose than the campaign's,
- was not in force at `checked_at` (not yet signed then: the check cannot have found it),
- expired (expiry date) or was ended by an expiry event that had occurred, at or before `sent_at` — the sender
  checks time-based ends against the end of the window, so none may fall inside it; an expiry event counts from
  when it was recorded (R-AUTH-DEFECTIVE: "known to have occurred"), as the predicate sees it: an event recorded
  after the send, dated before it, does not make the send uncovered,
- was revoked (the revocation committed) or marked defective at or before `sent_at`.

Each "at or before `sent_at`" also holds "at or before `checked_at`", which a true record keeps at or before
`sent_at`; the evidence is not trusted to. It works on any set of deliveries: a campaign (the campaign page's
verdict, campaigns.selectors), a patient, a period (the reports).
"""
from functools import reduce
from operator import or_

from django.db.models import BooleanField, Case, Count, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.utils.translation import gettext_lazy

from campaigns.models import Delivery
from consent.models import AuthorizationDefect, ExpiryEvent

GROUNDS = {
    "no_authorization": gettext_lazy("No authorization recorded"),
    "other_patient": gettext_lazy("Authorization of another patient"),
    "other_purpose": gettext_lazy("Authorization for another purpose"),
    "not_yet_signed": gettext_lazy("Checked or sent before the authorization was signed"),
    "expired": gettext_lazy("Sent on or after the expiry date"),
    "expiry_event": gettext_lazy("Sent after the expiry event occurred"),
    "revoked": gettext_lazy("Sent after the revocation"),
    "defective": gettext_lazy("Sent after a defect was recorded"),
}
# The delivery's own instants an end is compared with: the check's and the send's.
_INSTANTS = ("checked_at", "sent_at")


def _at_or_before_either(field: str) -> Q:
    """`field` (an instant that ends an authorization) at or before the check or the send."""
    return reduce(or_, [Q(**{f"{field}__lte": F(instant)}) for instant in _INSTANTS])


def _after_both(field: str) -> Q:
    """The complement for a field that may be NULL (no end): none, or after the check and after the send."""
    return Q(**{f"{field}__isnull": True}) | reduce(
        lambda a, b: a & b, [Q(**{f"{field}__gt": F(instant)}) for instant in _INSTANTS]
    )


def _event_known_before_either() -> Q:
    """The expiry event had occurred and was recorded at or before the check or the send."""
    field = "authorization__expiry_record"
    return reduce(
        or_,
        [Q(**{f"{field}__occurred_at__lte": F(i), f"{field}__recorded_at__lte": F(i)}) for i in _INSTANTS],
    )


def _event_unknown_at_both() -> Q:
    """The complement: no event, or at the check and at the send, not yet occurred or not yet recorded."""
    field = "authorization__expiry_record"
    return Q(**{f"{field}__isnull": True}) | reduce(
        lambda a, b: a & b,
        [Q(**{f"{field}__occurred_at__gt": F(i)}) | Q(**{f"{field}__recorded_at__gt": F(i)}) for i in _INSTANTS],
    )


def _defect_before(instant: str) -> Exists:
    return Exists(
        AuthorizationDefect.objects.filter(
            authorization_id=OuterRef("authorization_id"), recorded_at__lte=OuterRef(instant)
        )
    )


def _ground_conditions() -> dict[str, Q | Exists]:
    return {
        "no_authorization": Q(authorization__isnull=True),
        "other_patient": Q(authorization__isnull=False) & ~Q(authorization__patient_id=F("patient_id")),
        "other_purpose": Q(authorization__isnull=False) & ~Q(authorization__purpose_id=F("campaign__purpose_id")),
        # Signed after the check (or after the send): the check that allowed the message cannot have found it.
        "not_yet_signed": Q(authorization__signed_at__gt=F("checked_at")) | Q(authorization__signed_at__gt=F("sent_at")),
        "expired": _at_or_before_either("authorization__expires_at"),
        "expiry_event": _event_known_before_either(),
        "revoked": _at_or_before_either("authorization__revocation__revoked_at"),
        "defective": _defect_before("checked_at") | _defect_before("sent_at"),
    }


def sent_without_coverage_counts(deliveries: QuerySet[Delivery], *, also: dict | None = None) -> dict[str, int]:
    """{"total": n, "<ground>": n, ...} over the sent deliveries of `deliveries`, in one query. A delivery
    uncovered on two grounds counts once in the total and once under each ground. `also`: more aggregates
    over the same sent deliveries, computed in the same pass (a report reads a million rows once, not twice)."""
    conditions = _ground_conditions()
    sent = deliveries.filter(status=Delivery.Status.SENT)
    counts = sent.aggregate(
        total=Count("id", filter=reduce(or_, [Q(condition) for condition in conditions.values()])),
        **{name: Count("id", filter=Q(condition)) for name, condition in conditions.items()},
        **(also or {}),
    )
    return {name: counts[name] or 0 for name in ["total", *conditions, *(also or {})]}


def covered_at_send(*, purpose_id: int) -> Case:
    """Per delivery: True when it was sent under an authorization that covered it from its check to its send
    (none of the grounds above holds), False when it was sent without one, None when it was not sent. The
    complement of the grounds, written as one expression so that a streamed report can carry the check on every
    row.

    Expiry events and defects are rare; when the purpose has none at all (in the caller's snapshot: call it
    inside campaigns.reports.exports.report_snapshot), their clauses cannot change the answer and are left
    out, which spares the database a join and a sub-query per row."""
    covered = (
        Q(authorization__patient_id=F("patient_id"), authorization__purpose_id=purpose_id)
        & Q(authorization__signed_at__lte=F("checked_at"))
        & Q(authorization__signed_at__lte=F("sent_at"))
        & _after_both("authorization__expires_at")
        & _after_both("authorization__revocation__revoked_at")
    )
    if ExpiryEvent.objects.filter(authorization__purpose_id=purpose_id).exists():
        covered &= _event_unknown_at_both()
    if AuthorizationDefect.objects.filter(authorization__purpose_id=purpose_id).exists():
        covered &= ~Q(_ground_conditions()["defective"])
    return Case(
        When(Q(status=Delivery.Status.SENT) & covered, then=Value(True)),
        When(status=Delivery.Status.SENT, then=Value(False)),
        default=Value(None),
        output_field=BooleanField(null=True),
    )
