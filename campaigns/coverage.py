"""Sends without a covering authorization, computed from the stored evidence (R-SEND-COVERED, R-SEND-EVIDENCE).

The number printed on every report as "must be zero" is counted here, from the delivery rows against the
authorizations and everything that ends one — never asserted. A sent delivery is uncovered when the
authorization it names was not, at the moment it was sent (`sent_at`, the database's clock):

- missing (the database refuses this; counted anyway, in case a constraint was ever dropped),
- for another patient, or for another purpose than the campaign's,
- not yet signed, expired (expiry date at or before the send), ended by an expiry event that had occurred,
- revoked (the revocation committed at or before the send), or marked defective at or before the send.

It works on any set of deliveries: a campaign (the campaign page's verdict, campaigns.selectors), a patient, a
period (the reports).
"""
from functools import reduce
from operator import or_

from django.db.models import BooleanField, Case, Count, Exists, F, OuterRef, Q, QuerySet, Value, When

from campaigns.models import Delivery
from consent.models import AuthorizationDefect, ExpiryEvent

GROUNDS = {
    "no_authorization": "No authorization recorded",
    "other_patient": "Authorization of another patient",
    "other_purpose": "Authorization for another purpose",
    "not_yet_signed": "Sent before the authorization was signed",
    "expired": "Sent on or after the expiry date",
    "expiry_event": "Sent after the expiry event occurred",
    "revoked": "Sent after the revocation",
    "defective": "Sent after a defect was recorded",
}


def _ground_conditions() -> dict[str, Q | Exists]:
    return {
        "no_authorization": Q(authorization__isnull=True),
        "other_patient": Q(authorization__isnull=False) & ~Q(authorization__patient_id=F("patient_id")),
        "other_purpose": Q(authorization__isnull=False) & ~Q(authorization__purpose_id=F("campaign__purpose_id")),
        "not_yet_signed": Q(authorization__signed_at__gt=F("sent_at")),
        "expired": Q(authorization__expires_at__lte=F("sent_at")),
        "expiry_event": Q(authorization__expiry_record__occurred_at__lte=F("sent_at")),
        "revoked": Q(authorization__revocation__revoked_at__lte=F("sent_at")),
        "defective": Exists(
            AuthorizationDefect.objects.filter(
                authorization_id=OuterRef("authorization_id"), recorded_at__lte=OuterRef("sent_at")
            )
        ),
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
    """Per delivery: True when it was sent under an authorization that covered it at `sent_at` (none of the
    grounds above holds), False when it was sent without one, None when it was not sent. The complement of
    the grounds, written as one expression so that a streamed report can carry the check on every row.

    Expiry events and defects are rare; when the purpose has none at all (in the caller's snapshot: call it
    inside campaigns.reports.exports.report_snapshot), their clauses cannot change the answer and are left
    out, which spares the database a join and a sub-query per row."""
    covered = (
        Q(authorization__patient_id=F("patient_id"), authorization__purpose_id=purpose_id)
        & Q(authorization__signed_at__lte=F("sent_at"))
        & (Q(authorization__expires_at__isnull=True) | Q(authorization__expires_at__gt=F("sent_at")))
        & (
            Q(authorization__revocation__revoked_at__isnull=True)
            | Q(authorization__revocation__revoked_at__gt=F("sent_at"))
        )
    )
    if ExpiryEvent.objects.filter(authorization__purpose_id=purpose_id).exists():
        covered &= Q(authorization__expiry_record__occurred_at__isnull=True) | Q(
            authorization__expiry_record__occurred_at__gt=F("sent_at")
        )
    if AuthorizationDefect.objects.filter(authorization__purpose_id=purpose_id).exists():
        covered &= ~Q(_ground_conditions()["defective"])
    return Case(
        When(Q(status=Delivery.Status.SENT) & covered, then=Value(True)),
        When(status=Delivery.Status.SENT, then=Value(False)),
        default=Value(None),
        output_field=BooleanField(null=True),
    )
