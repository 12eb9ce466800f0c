"""Renewal invitations for expired authorizations (issue 4, item 9).

Expired is computed, not stored: the predicate decides coverage at each instant and every page shows an
authorization past its date as expired. What the daily task adds is the invitation to sign again, sent to a
patient only when all of these hold (the same care as any message we send a patient):

- an authorization of theirs for the purpose ended by its DATE within the last `window` (an expiry the
  patient did not choose): never when it carries an expiry event or a defect, and never when the patient
  revoked any authorization for the purpose since it was signed — a revocation is the patient's "no", and
  we do not ask again;
- they are not covered for the purpose now (the one predicate), so nobody is asked to renew what they have;
- the purpose has a published form to sign;
- they were not already invited to renew since that authorization expired (the task is safe to run twice).
"""
from datetime import timedelta

from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone

from consent.models import Authorization, AuthorizationDefect, ExpiryEvent, Invitation, Revocation
from consent.selectors.coverage import authorization_covering_list
from consent.selectors.form_versions import form_version_current
from consent.services.signing import invitation_create

RENEWAL_WINDOW = timedelta(days=30)


def authorization_renewal_candidate_list(*, window: timedelta = RENEWAL_WINDOW) -> list[Authorization]:
    """Authorizations that ended by their date within `window`, whose patient may be invited to renew."""
    this = OuterRef("pk")
    ended = (
        Authorization.objects.filter(expires_at__lte=Now(), expires_at__gt=timezone.now() - window)
        # Any revocation for the purpose since this was signed (of this one or a later one): the patient said no.
        .exclude(
            Exists(
                Revocation.objects.filter(
                    authorization__patient_id=OuterRef("patient_id"),
                    authorization__purpose_id=OuterRef("purpose_id"),
                    revoked_at__gte=OuterRef("signed_at"),
                )
            )
        )
        .exclude(Exists(ExpiryEvent.objects.filter(authorization=this)))
        .exclude(Exists(AuthorizationDefect.objects.filter(authorization=this)))
        .exclude(
            Exists(
                Invitation.objects.filter(
                    Q(channel=Invitation.Channel.RENEWAL) | Q(used_at__isnull=False),
                    patient_id=OuterRef("patient_id"),
                    purpose_id=OuterRef("purpose_id"),
                    created_at__gte=OuterRef("expires_at"),
                )
            )
        )
        .order_by("patient_id", "purpose_id", "-expires_at")
    )
    candidates: dict[tuple[int, int], Authorization] = {}
    for authorization in ended:
        candidates.setdefault((authorization.patient_id, authorization.purpose_id), authorization)
    return list(candidates.values())


def authorization_renewals_invite(*, window: timedelta = RENEWAL_WINDOW) -> int:
    """Invite each candidate to sign the current form again; returns how many were invited."""
    invited = 0
    for authorization in authorization_renewal_candidate_list(window=window):
        if authorization_covering_list(
            purpose_id=authorization.purpose_id, patient_ids=[authorization.patient_id]
        ).exists():
            continue
        if form_version_current(purpose_id=authorization.purpose_id) is None:
            continue
        invitation_create(
            actor=None,
            patient_id=authorization.patient_id,
            purpose_id=authorization.purpose_id,
            channel=Invitation.Channel.RENEWAL,
        )
        invited += 1
    return invited
