"""Inviting a patient to sign, and the patient signing: the form they read, the signature bound to its exact
text (R-AUTH-ESIGN), the PDF copy of what they signed (R-AUTH-COPY), emailed to them. ADR 0003.

An invitation token is random and names nothing: only its SHA-256 is stored, so the link in an email or a
QR code carries no patient data (R-NO-PHI-LEAK) and a copy of the database cannot be turned into links.
"""
import calendar
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import segno
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from kombu.exceptions import OperationalError as KombuOperationalError

from audit import actions
from audit.services import audit_record
from consent.documents import form_language, form_text, long_date, text_hash
from consent.models import Authorization, AuthorizationForm, Invitation, Patient, Purpose
from consent.pdf import authorization_pdf_render
from consent.selectors.form_versions import form_version_current, form_version_signable
from consent.services.authorizations import authorization_grant
from consent.tasks import authorization_copy_queue, invitation_queue

logger = logging.getLogger(__name__)

INVITATION_LIFETIME = timedelta(days=30)


class InvitationInvalid(Exception):
    """An invitation link that cannot be used; `reason` is unknown, expired or used."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def invitation_url(*, token: str) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("portal:invitation_open", kwargs={"token": token})


@dataclass(frozen=True)
class InvitationLink:
    url: str
    qr_svg: str  # an inline <svg> of the URL, for a staff page to show in a clinic


def invitation_link(*, token: str) -> InvitationLink:
    """The invitation's URL and a QR code of it, for a staff member to show a patient in a clinic."""
    url = invitation_url(token=token)
    svg = segno.make(url, error="m").svg_inline(scale=6, title=_("Invitation link as a QR code"))
    return InvitationLink(url=url, qr_svg=svg)


def invitation_create(*, actor, patient_id: int, purpose_id: int, channel: str) -> tuple[Invitation, str]:
    """Invite a patient to sign the current form of a purpose. Returns the invitation and its token, which
    is not stored anywhere: for channel "email" (and "renewal") it is emailed as a link now; for "qr" the
    caller shows invitation_link(token=...) to the patient."""
    patient = Patient.objects.get(pk=patient_id)
    purpose = Purpose.objects.get(pk=purpose_id)
    if form_version_current(purpose_id=purpose.pk) is None:
        raise ValidationError(_("This purpose has no published form to sign yet."))
    token = secrets.token_urlsafe(32)
    invitation = Invitation(
        patient=patient,
        purpose=purpose,
        token_digest=_token_digest(token),
        channel=channel,
        expires_at=timezone.now() + INVITATION_LIFETIME,
        created_by=actor,
    )
    invitation.full_clean()
    with transaction.atomic():
        invitation.save(force_insert=True)
        audit_record(
            actor=actor,
            action=actions.INVITATION_CREATED,
            object_type="invitation",
            object_id=invitation.pk,
            patient_id=patient.pk,
            details={"purpose_id": purpose.pk, "channel": channel},
        )
    if channel in (Invitation.Channel.EMAIL, Invitation.Channel.RENEWAL):
        # After the commit: a link to an invitation that was rolled back would lead nowhere.
        transaction.on_commit(
            lambda: invitation_queue(invitation_id=invitation.pk, url=invitation_url(token=token))
        )
    return invitation, token


def invitation_open(*, token: str) -> Invitation:
    """The invitation a token names, if it can still be used; InvitationInvalid says why not."""
    invitation = (
        Invitation.objects.select_related("patient", "purpose").filter(token_digest=_token_digest(token)).first()
    )
    if invitation is None:
        raise InvitationInvalid("unknown")
    if invitation.used_at is not None:
        raise InvitationInvalid("used")
    if invitation.expires_at <= timezone.now():
        raise InvitationInvalid("expired")
    return invitation




def _add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def form_expiry_for(*, form: AuthorizationForm, signed_at: datetime) -> tuple[datetime | None, str]:
    """(expires_at, expiry_event) of an authorization signed on this form at `signed_at` (R-AUTH-CORE-5)."""
    if form.expiry_kind == AuthorizationForm.ExpiryKind.MONTHS and form.expiry_months:
        return _add_months(signed_at, form.expiry_months), ""
    if form.expiry_kind == AuthorizationForm.ExpiryKind.DATE and form.expiry_date:
        # The whole of the stated day, in the organisation's time zone: what "ends on June 30" means to a reader.
        end_of_day = datetime.combine(form.expiry_date, time.max, tzinfo=ZoneInfo(settings.TIME_ZONE))
        return end_of_day, ""
    if form.expiry_kind == AuthorizationForm.ExpiryKind.EVENT and form.expiry_event.strip():
        return None, form.expiry_event.strip()
    # R-AUTH-CORE-5: an authorization always ends.
    raise ValidationError(_("This form has no expiration date or event (HIPAA, 45 CFR 164.508(c)(1)(v))."))


def signed_date_text(moment: datetime, language: str | None = None) -> str:
    """The day of signing in the organisation's zone, written out in the form's language."""
    return long_date(timezone.localtime(moment).date(), language)


def authorization_sign(
    *,
    patient_id: int,
    form_id: int,
    shown_text_hash: str,
    signature_name: str,
    intent_confirmed: bool,
    signed_by_representative: bool,
    representative_authority: str = "",
    signed_ip: str = "",
    user_agent: str = "",
    invitation_id: int | None = None,
) -> Authorization:
    """The patient (who proved their email address, ADR 0003) signs a form version on the web.

    R-AUTH-ESIGN: the typed full name and the checkbox saying what signing means are both required, and the
    signature is bound to the exact text that was shown: the page sends back the hash of what it displayed,
    and if the form's text hashes differently now, nothing is signed. The PDF copy is rendered before the
    transaction and attached in it, so an authorization never exists without its copy (R-AUTH-COPY)."""
    signature_name = " ".join(signature_name.split())
    representative_authority = representative_authority.strip()
    errors: dict[str, str] = {}
    if not signature_name:
        errors["signature_name"] = _("Type your full name to sign.")
    if not intent_confirmed:
        errors["intent"] = _("Tick the box to show that you mean to sign.")
    if signed_by_representative and not representative_authority:
        errors["representative_authority"] = _(
            "Tell us how you are allowed to act for the patient, for example: parent of a minor child, "
            "legal guardian, or health care power of attorney."
        )
    if errors:
        raise ValidationError(errors)
    form = AuthorizationForm.objects.select_related("purpose").get(pk=form_id)
    # The current version, in English or in a published translation of it (ADR 0026): the authorization records
    # which one was signed (its form_version), and its copy is in that language.
    if form_version_signable(purpose_id=form.purpose_id, form_id=form.pk) is None:
        raise ValidationError(
            _("This form has been replaced by a newer version. Please read the new one."), code="stale"
        )
    document_text = form_text(form)
    document_hash = text_hash(document_text)
    if not secrets.compare_digest(document_hash, shown_text_hash or ""):
        raise ValidationError(_("The form changed while you were reading it. Please read it again."), code="stale")
    patient = Patient.objects.get(pk=patient_id)
    signed_at = timezone.now()
    expires_at, expiry_event = form_expiry_for(form=form, signed_at=signed_at)
    if expires_at is not None and expires_at <= signed_at:
        raise ValidationError(_("This form has already ended and can no longer be signed."), code="ended")
    language = form_language(form)
    pdf_bytes = authorization_pdf_render(
        document_text=document_text,
        signature_name=signature_name,
        signed_date=signed_date_text(signed_at, language),
        signed_by_representative=signed_by_representative,
        representative_authority=representative_authority,
        text_hash=document_hash,
        expires_at=expires_at,
        expiry_event=expiry_event,
        language=language,
    )
    with transaction.atomic(durable=True):
        authorization = authorization_grant(
            actor=None,
            patient=patient,
            purpose=form.purpose,
            form_version=form,
            signed_at=signed_at,
            expires_at=expires_at,
            expiry_event=expiry_event,
            document_text=document_text,
            text_hash=document_hash,
            signature_name=signature_name,
            signed_by_representative=signed_by_representative,
            representative_authority=representative_authority if signed_by_representative else "",
            signed_ip=signed_ip,
            user_agent=user_agent,
        )
        # The file name is random and says nothing about the patient (R-NO-PHI-LEAK). The database lets the
        # pdf column be set exactly once, from empty.
        authorization.pdf.save(f"{secrets.token_hex(16)}.pdf", ContentFile(pdf_bytes), save=False)
        Authorization.objects.filter(pk=authorization.pk).update(pdf=authorization.pdf.name)
        if invitation_id is not None:
            Invitation.objects.filter(
                pk=invitation_id, patient_id=patient.pk, purpose_id=form.purpose_id, used_at__isnull=True
            ).update(used_at=signed_at)
    authorization_copy_email(authorization=authorization, patient=patient)
    return authorization


def authorization_copy_email(*, authorization: Authorization, patient: Patient) -> None:
    """Email the patient the PDF of what they signed (R-AUTH-COPY), through the transactional queue. Called
    after the signature committed; the task audits whether the copy went (authorization.pdf_emailed or
    authorization.pdf_email_failed). A mail failure does not undo the signature: the copy stays downloadable."""
    try:
        authorization_copy_queue(authorization_id=authorization.pk)
    except (KombuOperationalError, OSError) as error:  # the broker is away: the signature stands all the same
        logger.error("The signed copy of authorization %s could not be queued (%s)", authorization.pk, type(error).__name__)
        audit_record(
            actor_role=actions.PATIENT,
            action=actions.AUTHORIZATION_PDF_EMAIL_FAILED,
            object_type="authorization",
            object_id=authorization.pk,
            patient_id=patient.pk,
        )
