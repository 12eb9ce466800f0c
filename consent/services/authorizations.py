"""Authorizations: grant (a signature on a published form version), revoke (the patient, one-click, or written), the
expiry events and recorded defects. Append-only: nothing here updates a signed row."""
import functools
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from audit import actions
from audit.services import audit_record
from consent.models import (
    Authorization,
    AuthorizationDefect,
    AuthorizationForm,
    AuthorizationStanding,
    ExpiryEvent,
    Patient,
    Purpose,
    Revocation,
)
from consent.selectors.standing import authorization_standing_expected


def authorization_grant(
    *,
    actor,
    patient: Patient,
    purpose: Purpose,
    expires_at: datetime | None,
    expiry_event: str = "",
    signed_at: datetime | None = None,
    channel: str = Authorization.Channel.WEB,
    form_version: AuthorizationForm | None = None,
    document_text: str = "",
    text_hash: str = "",
    signature_name: str = "",
    signed_by_representative: bool = False,
    representative_authority: str = "",
    signed_ip: str = "",
    user_agent: str = "",
    scan_name: str = "",
    pdf_name: str = "",
    reinstates: Authorization | None = None,
) -> Authorization:
    """Store a signed authorization (or, for a treatment purpose, a consent to email). `actor` is the staff
    user who records it, or None when the patient signs for themselves. Signing flows build the document
    and its hash (consent.documents) and pass them here; this only stores what it is given, whole, with the
    names of documents already stored (a scan of a paper form, a PDF copy). It runs inside the caller's
    transaction when there is one (the FHIR import writes a whole bundle in one)."""
    if form_version is not None and form_version.purpose_id != purpose.pk:
        # R-AUTH-NO-COMPOUND: one purpose per form, so each purpose can be revoked on its own.
        raise ValidationError(gettext("An authorization covers the purpose of its form and no other."))
    if signed_by_representative and not representative_authority.strip():
        raise ValidationError(  # R-AUTH-CORE-6
            gettext("A personal representative must describe their authority (HIPAA, 45 CFR 164.508(c)(1)(vi)).")
        )
    authorization = Authorization(
        patient=patient,
        purpose=purpose,
        form_version=form_version,
        signed_at=signed_at or timezone.now(),
        expires_at=expires_at,
        expiry_event=expiry_event.strip(),
        channel=channel,
        document_text=document_text,
        text_hash=text_hash,
        signature_name=signature_name.strip(),
        signed_by_representative=signed_by_representative,
        representative_authority=representative_authority.strip() if signed_by_representative else "",
        signed_ip=signed_ip,
        user_agent=user_agent[:300],
        scan=scan_name,
        pdf=pdf_name,
        recorded_by=actor,
        reinstates=reinstates,
    )
    authorization.full_clean(exclude=["pdf", "scan"])
    with transaction.atomic():
        # The patient's row lock serialises this patient's grants, so the count of their purposes below, a new
        # statement after the lock, sees every grant committed before (ADR 0021).
        Patient.objects.select_for_update().filter(pk=patient.pk).values_list("pk").get()
        authorization.save(force_insert=True)
        AuthorizationStanding(
            authorization=authorization,
            patient_id=patient.pk,
            purpose_id=purpose.pk,
            signed_at=authorization.signed_at,
            expires_at=authorization.expires_at,
        ).save(force_insert=True)
        patient.authorized_purposes = (
            Authorization.objects.filter(patient_id=patient.pk).values("purpose_id").distinct().count()
        )
        Patient.objects.filter(pk=patient.pk).update(authorized_purposes=patient.authorized_purposes)
        audit_record(
            actor=actor,
            actor_role="" if actor else actions.PATIENT,
            action=actions.AUTHORIZATION_GRANTED,
            object_type="authorization",
            object_id=authorization.pk,
            patient_id=patient.pk,
            details={
                "purpose": purpose.code,
                "channel": channel,
                **({"has_scan": True} if scan_name else {}),
                **({"representative": True} if signed_by_representative else {}),
                **({"reinstates_id": reinstates.pk} if reinstates is not None else {}),
            },
        )
    return authorization


def authorization_revoke(
    *, actor, patient_id: int, purpose_id: int, channel: str, scan_name: str = ""
) -> list[Revocation]:
    """Revoke every active authorization of this patient for this purpose, effective when this commits:
    one switch per purpose, whichever channel the patient used (portal, one-click link, a letter)."""
    with transaction.atomic(durable=True):
        active = Authorization.objects.filter(
            patient_id=patient_id, purpose_id=purpose_id, revocation__isnull=True
        ).values_list("id", flat=True)
        return authorizations_revoke_locked(
            actor=actor, authorization_ids=list(active), channel=channel, scan_name=scan_name
        )


def authorizations_revoke_locked(
    *, actor, authorization_ids: list[int], channel: str, scan_name: str = ""
) -> list[Revocation]:
    """Revoke these authorizations inside the caller's transaction; returns the new revocations.

    The rows are locked FOR UPDATE in primary-key order before anything is written: a sending transaction
    holds them FOR SHARE while it checks and sends, so this waits for an in-flight batch to commit, and every
    batch that starts after this commits sees the revocation (R-REVOKE-ANYTIME, ADR 0001). An authorization
    already revoked is left as it is, so revoking twice is harmless. One audit event per patient and purpose.
    """
    locked = list(
        Authorization.objects.select_for_update(of=("self",)).filter(id__in=authorization_ids).order_by("id")
    )
    already = set(Revocation.objects.filter(authorization__in=locked).values_list("authorization_id", flat=True))
    revoked: dict[tuple[int, int], list[Revocation]] = {}
    for authorization in locked:
        if authorization.pk in already:
            continue
        revocation = Revocation(authorization=authorization, channel=channel, scan=scan_name, recorded_by=actor)
        revocation.full_clean(exclude=["authorization", "revoked_at", "scan"])
        revocation.save(force_insert=True)
        _standing_refresh(authorization_id=authorization.pk)
        revoked.setdefault((authorization.patient_id, authorization.purpose_id), []).append(revocation)
    for (patient_id, purpose_id), revocations in sorted(revoked.items()):
        details = {
            "purpose_id": purpose_id,
            "channel": channel,
            "authorization_ids": [revocation.authorization_id for revocation in revocations],
        }
        if scan_name:
            details["has_scan"] = True
        audit_record(
            actor=actor,
            actor_role="" if actor else actions.PATIENT,
            action=actions.AUTHORIZATION_REVOKED,
            object_type="patient",
            object_id=patient_id,
            patient_id=patient_id,
            details=details,
        )
        for hook in _revocation_hooks():
            hook(patient_id=patient_id, purpose_id=purpose_id)
    return [revocation for group in revoked.values() for revocation in group]


@functools.cache
def _revocation_hooks() -> tuple:
    """What else ends at a revocation's commit, in its transaction (HIPAAMAIL_REVOCATION_HOOKS): the journey
    enrolments of that purpose (ADR 0016). Named in settings because consent imports no app above it."""
    return tuple(import_string(path) for path in settings.HIPAAMAIL_REVOCATION_HOOKS)


def expiry_event_record(*, actor, authorization_id: int, occurred_at: datetime, source: str = "staff") -> ExpiryEvent:
    """The expiration event of an event-based authorization happened: coverage ends at `occurred_at`.

    Locks the authorization like a revocation does, so a batch in flight either saw the authorization
    before this or waits for it (ADR 0001)."""
    with transaction.atomic(durable=True):
        authorization = Authorization.objects.select_for_update().get(pk=authorization_id)
        if not authorization.expiry_event:
            raise ValidationError(gettext("This authorization expires on a date, not on an event."))
        if ExpiryEvent.objects.filter(authorization=authorization).exists():
            raise ValidationError(gettext("The expiry event of this authorization is already recorded."))
        event = ExpiryEvent(
            authorization=authorization, occurred_at=occurred_at, source=source, recorded_by=actor
        )
        event.full_clean(exclude=["authorization"])
        event.save(force_insert=True)
        _standing_refresh(authorization_id=authorization.pk)
        audit_record(
            actor=actor,
            actor_role="" if actor else actions.INTEGRATION,
            action=actions.AUTHORIZATION_EXPIRY_EVENT_RECORDED,
            object_type="authorization",
            object_id=authorization.pk,
            patient_id=authorization.patient_id,
            details={"source": source},
        )
    return event


def authorization_defect_record(*, actor, authorization_id: int, reason: str) -> AuthorizationDefect:
    """Record that an authorization is defective (164.508(b)(2)); it stops covering when this commits."""
    with transaction.atomic(durable=True):
        authorization = Authorization.objects.select_for_update().get(pk=authorization_id)
        if AuthorizationDefect.objects.filter(authorization=authorization, reason=reason).exists():
            raise ValidationError(gettext("This defect of the authorization is already recorded."))
        defect = AuthorizationDefect(authorization=authorization, reason=reason, recorded_by=actor)
        defect.full_clean(exclude=["authorization"])
        defect.save(force_insert=True)
        _standing_refresh(authorization_id=authorization.pk)
        audit_record(
            actor=actor,
            action=actions.AUTHORIZATION_DEFECT_RECORDED,
            object_type="authorization",
            object_id=authorization.pk,
            patient_id=authorization.patient_id,
            details={"reason": reason},
        )
    return defect


def _standing_refresh(*, authorization_id: int) -> None:
    """Write the authorization's standing (the live counts', ADR 0021) again from its evidence, just written. The
    caller holds the authorization's row lock, which every writer of its standing takes first. Writes the row when
    there is none (authorizations loaded past the services, before a rebuild): what ends an authorization never
    fails for want of the summary."""
    expected = (
        authorization_standing_expected()
        .filter(pk=authorization_id)
        .values("patient_id", "purpose_id", "signed_at", "expires_at", "expected_event_at", "expected_ended_by")
        .get()
    )
    AuthorizationStanding.objects.update_or_create(
        authorization_id=authorization_id,
        defaults={
            "patient_id": expected["patient_id"],
            "purpose_id": expected["purpose_id"],
            "signed_at": expected["signed_at"],
            "expires_at": expected["expires_at"],
            "expiry_event_at": expected["expected_event_at"],
            "ended_by": expected["expected_ended_by"],
        },
    )


def authorizations_reinstate(
    *, revoked_ids: list[int], channel_revoked: str, since, signed_ip: str = "", user_agent: str = ""
) -> dict[int, int]:
    """The patient undoes a revocation made moments ago (ADR 0027): each authorization in `revoked_ids` that was
    revoked through `channel_revoked` at or after `since`, and would cover them again, is stored again as a new
    authorization (channel REINSTATED, naming the revoked one): the same form version, text, hash, signature and
    end, covered from now on. The revocation stays, as evidence, and so does the gap between the two: THE predicate is
    not asked to forget it. Skipped, with nothing written: one already reinstated, one that has ended anyway (its date
    passed, its expiry event or a defect was recorded), and any purpose the patient signed again since. Returns
    {revoked id: new id}. In the caller's transaction (its audit of the undo commits with it); the rows are locked in
    primary-key order, as revocations lock them."""
    reinstated: dict[int, int] = {}
    with transaction.atomic():
        locked = list(
            Authorization.objects.select_for_update(of=("self",))
            .filter(id__in=revoked_ids)
            .select_related("patient", "purpose", "form_version")
            .order_by("id")
        )
        now = timezone.now()
        for authorization in locked:
            revocation = Revocation.objects.filter(authorization=authorization).first()
            if revocation is None or revocation.channel != channel_revoked or revocation.revoked_at < since:
                continue
            if Authorization.objects.filter(reinstates=authorization).exists():
                continue
            if authorization.expires_at is not None and authorization.expires_at <= now:
                continue
            if (
                ExpiryEvent.objects.filter(authorization=authorization).exists()
                or AuthorizationDefect.objects.filter(authorization=authorization).exists()
            ):
                continue
            if Authorization.objects.filter(
                patient_id=authorization.patient_id, purpose_id=authorization.purpose_id, signed_at__gt=revocation.revoked_at
            ).exists():
                continue  # they signed again since: that is what covers them now
            again = authorization_grant(
                actor=None,
                patient=authorization.patient,
                purpose=authorization.purpose,
                form_version=authorization.form_version,
                signed_at=now,
                expires_at=authorization.expires_at,
                expiry_event=authorization.expiry_event,
                channel=Authorization.Channel.REINSTATED,
                document_text=authorization.document_text,
                text_hash=authorization.text_hash,
                signature_name=authorization.signature_name,
                signed_by_representative=authorization.signed_by_representative,
                representative_authority=authorization.representative_authority,
                signed_ip=signed_ip,
                user_agent=user_agent,
                pdf_name=authorization.pdf.name if authorization.pdf else "",
                reinstates=authorization,
            )
            reinstated[authorization.pk] = again.pk
    return reinstated
