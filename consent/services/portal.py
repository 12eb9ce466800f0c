"""The patient portal: proving control of an email address with an emailed one-time code, and what a signed-in
patient may do with their own authorizations (see, revoke, sign again). ADR 0003.

The pending code lives in the patient's session (a mapping passed in as `store`), hashed, never in clear; it
works for CODE_LIFETIME_SECONDS and for CODE_MAX_ATTEMPTS tries, then a new one is needed. New codes are
throttled per patient (CODES_PER_HOUR) in the cache.
"""
import hashlib
import hmac
import secrets
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import actions
from audit.services import audit_record
from consent import crypto
from consent.models import Authorization, AuthorizationForm, Invitation, Patient, Purpose, Revocation
from consent.selectors.coverage import authorization_covering_list
from consent.services.authorizations import authorization_revoke
from consent.tasks import sign_in_code_queue

CODE_LIFETIME_SECONDS = 10 * 60
CODE_MAX_ATTEMPTS = 5
CODES_PER_HOUR = 5
_PENDING = "portal_code"


class CodeOutcome(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"  # try again
    LOCKED = "locked"  # too many wrong tries: a new code is needed
    EXPIRED = "expired"  # too old, or none pending: a new code is needed


def _code_digest(code: str, salt: str) -> str:
    return hmac.new(f"{settings.SECRET_KEY}:{salt}".encode(), code.encode(), hashlib.sha256).hexdigest()


def _throttled(patient_id: int) -> bool:
    key = f"portal:codes:{patient_id}"
    cache.add(key, 0, timeout=3600)
    try:
        issued = cache.incr(key)
    except ValueError:  # the entry expired between add and incr
        cache.set(key, 1, timeout=3600)
        issued = 1
    return issued > CODES_PER_HOUR


def _pending_store(store: MutableMapping, *, patient_id: int | None, code: str) -> None:
    salt = secrets.token_hex(8)
    store[_PENDING] = {
        "patient_id": patient_id,
        "salt": salt,
        "digest": _code_digest(code, salt),
        "expires": time.time() + CODE_LIFETIME_SECONDS,
        "attempts": 0,
    }


def patient_code_issue(*, store: MutableMapping, patient: Patient) -> bool:
    """Email a new 6-digit code to the patient's address and remember its hash in `store`.

    Returns False, sending nothing, when this patient asked for too many codes in the last hour."""
    if _throttled(patient.pk):
        audit_record(
            actor_role=actions.PATIENT, action=actions.PATIENT_CODE_THROTTLED,
            object_type="patient", object_id=patient.pk,
            patient_id=patient.pk,
        )
        return False
    code = f"{secrets.randbelow(10**6):06d}"
    _pending_store(store, patient_id=patient.pk, code=code)
    # Queued on the transactional queue: sent by a worker within seconds, never behind a campaign.
    sign_in_code_queue(patient_id=patient.pk, code=code, minutes=CODE_LIFETIME_SECONDS // 60)
    audit_record(
        actor_role=actions.PATIENT, action=actions.PATIENT_CODE_SENT, object_type="patient", object_id=patient.pk,
        patient_id=patient.pk,
    )
    return True


def patient_code_request(*, store: MutableMapping, email: str) -> None:
    """A person typed an address on the sign-in page. If a patient has it, email them a code; if not, keep a
    pending code that no one knows, so that every next step looks the same (who is a patient stays private)."""
    patient = Patient.objects.filter(email_digest=crypto.lookup_digest(email)).first()
    if patient is None or not patient_code_issue(store=store, patient=patient):
        _pending_store(store, patient_id=None, code=secrets.token_hex(16))


def patient_code_pending(*, store: MutableMapping) -> bool:
    pending = store.get(_PENDING)
    return bool(pending) and pending["expires"] > time.time()


def patient_code_pending_for(*, store: MutableMapping, patient_id: int) -> bool:
    return patient_code_pending(store=store) and store[_PENDING]["patient_id"] == patient_id


def patient_code_verify(*, store: MutableMapping, code: str) -> tuple[CodeOutcome, int | None]:
    """Check a typed code against the pending one: (outcome, the proven patient's id when verified)."""
    pending = store.get(_PENDING)
    if not pending or pending["expires"] <= time.time():
        store.pop(_PENDING, None)
        return CodeOutcome.EXPIRED, None
    typed = "".join(character for character in code if character.isdigit())
    patient_id = pending["patient_id"]
    if patient_id is not None and hmac.compare_digest(_code_digest(typed, pending["salt"]), pending["digest"]):
        store.pop(_PENDING)
        audit_record(
            actor_role=actions.PATIENT, action=actions.PATIENT_EMAIL_PROVEN,
            object_type="patient", object_id=patient_id,
            patient_id=patient_id,
        )
        return CodeOutcome.VERIFIED, patient_id
    attempts = pending["attempts"] + 1
    if attempts >= CODE_MAX_ATTEMPTS:
        store.pop(_PENDING)
        if patient_id is not None:
            audit_record(
                actor_role=actions.PATIENT, action=actions.PATIENT_CODE_LOCKED,
                object_type="patient", object_id=patient_id,
                patient_id=patient_id,
            )
        return CodeOutcome.LOCKED, None
    store[_PENDING] = pending | {"attempts": attempts}  # a new dict, so the session knows it changed
    return CodeOutcome.WRONG, None


def email_masked(email: str) -> str:
    """j***@example.org: enough for a patient to recognise their address, not enough to learn it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


# --- What a signed-in patient sees and does -----------------------------------------------------------------


@dataclass(frozen=True)
class PortalAuthorization:
    authorization: Authorization
    status: str  # active, expired, revoked, ended

    @property
    def status_label(self) -> str:
        return {
            "active": _("Active"),
            "expired": _("Expired"),
            "revoked": _("Stopped by you"),
            "ended": _("Ended"),
        }[self.status]


@dataclass(frozen=True)
class PortalChoice:
    purpose: Purpose
    covering: Authorization | None  # the authorization that makes the patient receive these, if any
    can_sign: bool  # a published form exists to sign
    # The one purpose whose "Read the form and sign" is the page's primary button (issue 17, item 5: calm visual
    # weight); every other is secondary. At most one per page.
    primary: bool = False


def _covering_ids(*, patient_id: int, purpose_ids) -> set[int]:
    covering: set[int] = set()
    for purpose_id in set(purpose_ids):
        covering |= set(
            authorization_covering_list(purpose_id=purpose_id, patient_ids=[patient_id]).values_list("id", flat=True)
        )
    return covering


def portal_authorization_list(*, patient_id: int) -> list[PortalAuthorization]:
    """Every authorization of this patient, newest first, with its status. Active means THE predicate
    (consent.selectors.coverage.authorization_covering_list) covers it now; the other labels only explain why not."""
    authorizations = list(
        Authorization.objects.filter(patient_id=patient_id)
        .select_related("purpose", "revocation", "expiry_record")
        .order_by("-signed_at", "-id")
    )
    covering = _covering_ids(patient_id=patient_id, purpose_ids=[a.purpose_id for a in authorizations])
    now = timezone.now()
    rows = []
    for authorization in authorizations:
        if authorization.pk in covering:
            status = "active"
        elif hasattr(authorization, "revocation"):
            status = "revoked"
        elif authorization.expires_at is not None and authorization.expires_at <= now:
            status = "expired"
        else:
            status = "ended"  # its expiry event happened, or a defect was recorded
        rows.append(PortalAuthorization(authorization=authorization, status=status))
    return rows


def portal_choice_list(*, patient_id: int, invited_purpose_id: int | None = None) -> list[PortalChoice]:
    """One switch per purpose: every purpose that can be signed now or that this patient has signed for.

    At most one gets the primary button, the one most likely the reason they came (issue 17, item 5): the purpose of
    the invitation they opened in this session, else the purpose whose authorization most recently ended by its date
    (a renewal). A purpose they stopped is never pushed: stopping was their choice. Otherwise none is primary."""
    signable = set(
        AuthorizationForm.objects.filter(status=AuthorizationForm.Status.PUBLISHED).values_list("purpose_id", flat=True)
    )
    signed = set(Authorization.objects.filter(patient_id=patient_id).values_list("purpose_id", flat=True))
    purposes = list(Purpose.objects.filter(pk__in=signable | signed).order_by("name"))
    covering = {
        authorization.purpose_id: authorization
        for authorization in Authorization.objects.filter(
            pk__in=_covering_ids(patient_id=patient_id, purpose_ids=[p.pk for p in purposes])
        ).order_by("id")
    }
    open_to_sign = {purpose.pk for purpose in purposes if purpose.pk in signable and purpose.pk not in covering}
    primary = invited_purpose_id if invited_purpose_id in open_to_sign else None
    if primary is None:
        stopped = set(
            Revocation.objects.filter(authorization__patient_id=patient_id).values_list(
                "authorization__purpose_id", flat=True
            )
        )
        ended = (
            Authorization.objects.filter(
                patient_id=patient_id, purpose_id__in=open_to_sign - stopped, expires_at__lte=timezone.now()
            )
            .order_by("-expires_at")
            .values_list("purpose_id", flat=True)
            .first()
        )
        primary = ended
    return [
        PortalChoice(
            purpose=purpose,
            covering=covering.get(purpose.pk),
            can_sign=purpose.pk in signable,
            primary=purpose.pk == primary,
        )
        for purpose in purposes
    ]


def portal_invitation_purpose_id(*, patient_id: int, invitation_id: int) -> int | None:
    """The purpose of an unused invitation of this patient (the one they opened in this session), or None."""
    return (
        Invitation.objects.filter(pk=invitation_id, patient_id=patient_id, used_at__isnull=True)
        .values_list("purpose_id", flat=True)
        .first()
    )


def portal_authorization_get(*, patient_id: int, authorization_id: int) -> Authorization:
    """One of this patient's authorizations. Another patient's raises DoesNotExist, like a missing one."""
    return Authorization.objects.select_related("purpose").get(pk=authorization_id, patient_id=patient_id)


def portal_authorization_is_active(*, authorization: Authorization) -> bool:
    return authorization_covering_list(
        purpose_id=authorization.purpose_id, patient_ids=[authorization.patient_id]
    ).filter(pk=authorization.pk).exists()


def portal_authorization_revoke(*, patient_id: int, authorization_id: int) -> list[Revocation]:
    """The patient stops an authorization of theirs from the portal: effective when this commits, for the
    whole purpose (R-REVOKE-ANYTIME); a revocation through the portal is a writing (R-REVOKE-WRITTEN)."""
    authorization = portal_authorization_get(patient_id=patient_id, authorization_id=authorization_id)
    if not portal_authorization_is_active(authorization=authorization):
        raise ValidationError(_("This authorization has already ended."))
    return authorization_revoke(
        actor=None, patient_id=patient_id, purpose_id=authorization.purpose_id, channel=Revocation.Channel.PORTAL
    )


def portal_purpose_get(*, purpose_id: int) -> Purpose:
    return Purpose.objects.get(pk=purpose_id)


def portal_patient_get(*, patient_id: int) -> Patient:
    return Patient.objects.get(pk=patient_id)


__all__ = [
    "CodeOutcome",
    "PortalAuthorization",
    "PortalChoice",
    "email_masked",
    "patient_code_issue",
    "patient_code_pending",
    "patient_code_pending_for",
    "patient_code_request",
    "patient_code_verify",
    "portal_authorization_get",
    "portal_authorization_is_active",
    "portal_authorization_list",
    "portal_authorization_revoke",
    "portal_choice_list",
    "portal_invitation_purpose_id",
    "portal_patient_get",
    "portal_purpose_get",
]
