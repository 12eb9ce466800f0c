"""Reads for the staff patient record (R-MIN-NECESSARY): finding a patient by an identifier's keyed digest,
and each authorization's state as the predicate sees it now.

The state is computed with consent.selectors (the one predicate): "active" means authorization_covering_list
covers this very row now; otherwise the reason comes from the rows that end it, in the order
authorization_gap_list ranks them (revoked, defect, expiry event, expired).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import QuerySet
from django.db.models.functions import Now
from django.utils.translation import gettext_noop

from consent import crypto
from consent.models import Authorization, AuthorizationDefect, Patient, PatientImport
from consent.selectors.coverage import CoverageGap, authorization_covering_list


class AuthorizationState:
    ACTIVE = "active"
    NOT_YET_SIGNED = "not_yet_effective"
    REVOKED = CoverageGap.REVOKED
    DEFECTIVE = "defective"
    ENDED_BY_EVENT = CoverageGap.EXPIRY_EVENT
    EXPIRED = CoverageGap.EXPIRED


# English here, as the patient ledger (campaigns.reports) prints them; staff pages translate them where they show
# them ({% translate row.state_label %}), from the consent catalogue.
STATE_LABELS = {
    AuthorizationState.ACTIVE: gettext_noop("Active"),
    AuthorizationState.NOT_YET_SIGNED: gettext_noop("Not yet in effect"),
    AuthorizationState.REVOKED: gettext_noop("Revoked"),
    AuthorizationState.DEFECTIVE: gettext_noop("Defective"),
    AuthorizationState.ENDED_BY_EVENT: gettext_noop("Ended by its expiry event"),
    AuthorizationState.EXPIRED: gettext_noop("Expired"),
}


@dataclass
class AuthorizationRow:
    authorization: Authorization
    state: str
    defect_reasons: list[str] = field(default_factory=list)

    @property
    def state_label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def is_active(self) -> bool:
        return self.state == AuthorizationState.ACTIVE

    @property
    def is_revoked(self) -> bool:
        return hasattr(self.authorization, "revocation")

    @property
    def expiry_event_recordable(self) -> bool:
        return bool(self.authorization.expiry_event) and not hasattr(self.authorization, "expiry_record")








def patient_find(*, email: str = "", external_id: str = "") -> Patient | None:
    """The patient with exactly this email address or external id, found by keyed digest (never by
    decrypting every row)."""
    if email.strip():
        return Patient.objects.filter(email_digest=crypto.lookup_digest(email)).first()
    if external_id.strip():
        return Patient.objects.filter(external_id_digest=crypto.lookup_digest(external_id)).first()
    return None


def patient_authorization_queryset(*, patient_id: int) -> QuerySet[Authorization]:
    return (
        Authorization.objects.filter(patient_id=patient_id)
        .select_related("purpose", "form_version", "recorded_by", "revocation__recorded_by", "expiry_record")
        .prefetch_related("defects")
        .order_by("-signed_at", "-id")
    )


def authorization_state(authorization: Authorization) -> str:
    """The state of one authorization now. Covered-or-not is the predicate's decision; the rest only names
    why (R-AUTH-DEFECTIVE: each ground is a state of its own)."""
    covered = authorization_covering_list(
        purpose_id=authorization.purpose_id, patient_ids=[authorization.patient_id]
    ).filter(id=authorization.pk)
    if covered.exists():
        return AuthorizationState.ACTIVE
    # Re-read the ending rows from the database: the instance may have been loaded before one was added.
    fresh = Authorization.objects.filter(pk=authorization.pk)
    if fresh.filter(revocation__isnull=False).exists():
        return AuthorizationState.REVOKED
    if AuthorizationDefect.objects.filter(authorization_id=authorization.pk).exists():
        return AuthorizationState.DEFECTIVE
    if fresh.filter(expiry_record__occurred_at__lte=Now()).exists():
        return AuthorizationState.ENDED_BY_EVENT
    if fresh.filter(expires_at__lte=Now()).exists():
        return AuthorizationState.EXPIRED
    return AuthorizationState.NOT_YET_SIGNED


def patient_authorization_rows(*, patient_id: int) -> list[AuthorizationRow]:
    authorizations = list(patient_authorization_queryset(patient_id=patient_id))
    covering: set[int] = set()
    for purpose_id in {authorization.purpose_id for authorization in authorizations}:
        covering |= set(
            authorization_covering_list(purpose_id=purpose_id, patient_ids=[patient_id]).values_list("id", flat=True)
        )
    rows = []
    for authorization in authorizations:
        defects = [defect.reason for defect in authorization.defects.all()]
        if authorization.pk in covering:
            state = AuthorizationState.ACTIVE
        else:
            state = authorization_state(authorization)
        rows.append(AuthorizationRow(authorization=authorization, state=state, defect_reasons=defects))
    return rows


def patient_import_unfinished_list() -> list[int]:
    """Imports started and not finished: running now, or whose task was lost (a broker restart, a worker that
    died mid-import: its transaction rolled back and left the status at importing)."""
    return list(
        PatientImport.objects.filter(status=PatientImport.Status.IMPORTING).order_by("id").values_list("id", flat=True)
    )
