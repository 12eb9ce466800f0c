"""The patient portal under /my/: invitation, emailed code, signing, the PDF copy, stopping and renewing.

Patients are not staff users: these URLs are marked patient pages (accounts.access.patient_pages) and each
view that shows or changes a patient's data is wrapped in consent.portal_session.patient_required, which
needs the emailed code to have been typed back in this session (ADR 0003). "Missing" and "not yours" are the
same 404. No URL names a patient, an address or a name (R-NO-PHI-LEAK).
"""
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django.views.i18n import set_language

from accounts.throttle import client_ip, throttle_check, throttle_subject
from audit import actions
from audit.services import audit_record
from consent.documents import form_sections, form_text, text_hash
from consent.forms.portal import CodeForm, EmailForm, SignForm
from consent.languages import language_activate, language_chosen_on_device, language_for_patient, language_remember
from consent.models import Authorization, Language, Purpose
from consent.portal_session import (
    patient_required,
    portal_next_pop,
    portal_next_set,
    portal_patient_id,
    portal_patient_sign_in,
    portal_patient_sign_out,
)
from consent.selectors.coverage import authorization_covering_list
from consent.selectors.form_versions import form_version_for_language, form_version_signable
from consent.services import portal as portal_services
from consent.services import signing
from consent.services.patients import patient_language_set

_INVITATION = "portal_invitation_id"
# Whose code this session waits for, as a keyed digest (accounts.throttle): code entry is throttled per account.
_CODE_SUBJECT = "portal_code_subject"


@require_safe
def invitation_open(request, token: str):
    """Opening the link emails a code to the address on record; typing it back proves the address."""
    if (refused := throttle_check(request, scope="signing", key=f"invitation:{token}")) is not None:
        return refused
    try:
        invitation = signing.invitation_open(token=token)
    except signing.InvitationInvalid as invalid:
        status = 404 if invalid.reason == "unknown" else 410
        return render(request, "consent/portal/invitation_invalid.html", {"reason": invalid.reason}, status=status)
    request.session[_INVITATION] = invitation.pk
    request.session[_CODE_SUBJECT] = throttle_subject(f"patient:{invitation.patient_id}")
    # Arriving from our link: the portal speaks the patient's language (unless they chose another on this device).
    language = language_for_patient(request, invitation.patient.language)
    language_activate(request, language)
    sign_url = reverse("portal:sign", kwargs={"purpose_id": invitation.purpose_id})
    signed_in_as = portal_patient_id(request)
    if signed_in_as == invitation.patient_id:
        return language_remember(redirect(sign_url), language)
    if signed_in_as is not None:
        portal_patient_sign_out(request)  # someone else's session on a shared device: start again
    portal_next_set(request, sign_url)
    sent = True
    if not portal_services.patient_code_pending_for(store=request.session, patient_id=invitation.patient_id):
        sent = portal_services.patient_code_issue(store=request.session, patient=invitation.patient)
    response = render(
        request,
        "consent/portal/invitation_code.html",
        {
            "masked_email": portal_services.email_masked(invitation.patient.email),
            "sent": sent,
            "form": CodeForm(),
            "purpose": invitation.purpose,
        },
    )
    return language_remember(response, language)


@require_http_methods(["GET", "HEAD", "POST"])
def sign_in(request):
    """The same answer whether or not the address is a patient's: who is a patient stays private."""
    form = EmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        # The same limits whether or not the address is a patient's (who is a patient stays private).
        address = f"address:{form.cleaned_data['email'].strip().lower()}"
        if (refused := throttle_check(request, scope="portal_code_request", key=address)) is not None:
            return refused
        request.session[_CODE_SUBJECT] = throttle_subject(address)
        portal_services.patient_code_request(store=request.session, email=form.cleaned_data["email"])
        return redirect("portal:code")
    return render(request, "consent/portal/sign_in.html", {"form": form})


@require_http_methods(["GET", "HEAD", "POST"])
def code_enter(request):
    if not portal_services.patient_code_pending(store=request.session):
        return render(request, "consent/portal/code_expired.html", status=410 if request.method == "POST" else 200)
    form = CodeForm(request.POST or None)
    if request.method == "POST":
        subject = request.session.get(_CODE_SUBJECT)
        if (refused := throttle_check(request, scope="portal_code_entry", key=subject)) is not None:
            return refused
    if request.method == "POST" and form.is_valid():
        outcome, patient_id = portal_services.patient_code_verify(
            store=request.session, code=form.cleaned_data["code"]
        )
        if outcome == portal_services.CodeOutcome.VERIFIED:
            portal_patient_sign_in(request, patient_id=patient_id)
            response = redirect(portal_next_pop(request, reverse("portal:home")))
            if language_chosen_on_device(request) is None:
                # Signed in: the next pages follow the language stored for them.
                patient = portal_services.portal_patient_get(patient_id=patient_id)
                language_remember(response, patient.language)
            return response
        if outcome == portal_services.CodeOutcome.LOCKED:
            return render(request, "consent/portal/code_locked.html", status=429)
        if outcome == portal_services.CodeOutcome.EXPIRED:
            return render(request, "consent/portal/code_expired.html", status=410)
        form.add_error("code", _("That code is not right. Check the email and try again."))
    return render(request, "consent/portal/code.html", {"form": form})


@require_POST
def language_set(request):
    """The language switcher on patient pages (POST, CSRF): Django's set_language keeps the choice on this device and
    goes back to the page (a page of ours only); a signed-in patient's choice is also stored for their mail."""
    response = set_language(request)
    language = request.POST.get("language")
    patient_id = portal_patient_id(request)
    if patient_id is not None and language in Language.values:
        patient_language_set(actor=None, patient_id=patient_id, language=language, source="portal")
    return response


@require_POST
def sign_out(request):
    portal_patient_sign_out(request)
    request.session.pop(_INVITATION, None)
    return render(request, "consent/portal/signed_out.html")


def _invited_purpose_id(request) -> int | None:
    invitation_id = request.session.get(_INVITATION)
    if invitation_id is None:
        return None
    return portal_services.portal_invitation_purpose_id(
        patient_id=request.portal_patient_id, invitation_id=invitation_id
    )


@patient_required
@require_safe
def home(request):
    patient_id = request.portal_patient_id
    return render(
        request,
        "consent/portal/home.html",
        {
            "choices": portal_services.portal_choice_list(
                patient_id=patient_id, invited_purpose_id=_invited_purpose_id(request)
            ),
            "authorizations": portal_services.portal_authorization_list(patient_id=patient_id),
        },
    )


@patient_required
@require_http_methods(["GET", "HEAD", "POST"])
def sign(request, purpose_id: int):
    """Read the current form of a purpose and sign it (also how an expired or stopped one is renewed)."""
    patient_id = request.portal_patient_id
    try:
        purpose = portal_services.portal_purpose_get(purpose_id=purpose_id)
    except Purpose.DoesNotExist:
        raise Http404 from None
    # The version in the page's language: a published translation of the current form, else the English one.
    form_version = form_version_for_language(purpose_id=purpose.pk, language=request.LANGUAGE_CODE)
    if form_version is None:
        raise Http404
    covering = authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient_id]).first()
    if covering is not None:
        return render(request, "consent/portal/already_signed.html", {"purpose": purpose, "authorization": covering})
    if request.method == "POST":
        if (refused := throttle_check(request, scope="signing", key=f"patient:{patient_id}")) is not None:
            return refused
    form = SignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        invitation_id = request.session.get(_INVITATION)
        representative = form.cleaned_data["signer"] == SignForm.REPRESENTATIVE
        # The version the page showed, if it may still be signed (the language may have been switched since).
        shown_id = form.cleaned_data["form_id"]
        if shown_id and (shown := form_version_signable(purpose_id=purpose.pk, form_id=shown_id)) is not None:
            form_version = shown
        try:
            authorization = signing.authorization_sign(
                patient_id=patient_id,
                form_id=form_version.pk,
                shown_text_hash=form.cleaned_data["text_hash"],
                signature_name=form.cleaned_data["signature_name"],
                intent_confirmed=form.cleaned_data["intent"],
                signed_by_representative=representative,
                representative_authority=form.cleaned_data["representative_authority"],
                signed_ip=client_ip(request),  # the signer's own address behind the proxy (TRUSTED_PROXY_COUNT)
                user_agent=request.headers.get("User-Agent", ""),
                invitation_id=invitation_id,
            )
        except ValidationError as error:
            if hasattr(error, "error_dict"):
                for field, field_errors in error.message_dict.items():
                    form.add_error(field if field in form.fields else None, field_errors)
            else:
                # The form changed under the patient: the page shows the current text (and its hash) to read again.
                form.add_error(None, error.messages)
        else:
            request.session.pop(_INVITATION, None)
            return redirect("portal:signed", authorization_id=authorization.pk)
    return render(
        request,
        "consent/portal/sign.html",
        {
            "purpose": purpose,
            "form_version": form_version,
            "title": form_version.title,
            "sections": form_sections(form_version),
            "form": form,
            "shown_hash": text_hash(form_text(form_version)),
            "today": timezone.now(),
        },
        status=400 if form.errors else 200,
    )


def _own_authorization(request, authorization_id: int) -> Authorization:
    try:
        return portal_services.portal_authorization_get(
            patient_id=request.portal_patient_id, authorization_id=authorization_id
        )
    except Authorization.DoesNotExist:
        raise Http404 from None


@patient_required
@require_safe
def signed(request, authorization_id: int):
    authorization = _own_authorization(request, authorization_id)
    return render(request, "consent/portal/signed.html", {"authorization": authorization})


@patient_required
@require_safe
def authorization_pdf(request, authorization_id: int):
    authorization = _own_authorization(request, authorization_id)
    if not authorization.pdf:
        raise Http404
    audit_record(
        actor_role=actions.PATIENT,
        action=actions.AUTHORIZATION_PDF_DOWNLOADED,
        object_type="authorization",
        object_id=authorization.pk,
        patient_id=authorization.patient_id,
    )
    response = FileResponse(
        authorization.pdf.open("rb"), content_type="application/pdf", as_attachment=True,
        filename=f"signed-form-{authorization.signed_at:%Y-%m-%d}.pdf",
    )
    response["Cache-Control"] = "private, no-store"
    return response


@patient_required
@require_http_methods(["GET", "HEAD", "POST"])
def revoke(request, authorization_id: int):
    """A confirmation, then the revocation, effective at once (R-REVOKE-ANYTIME)."""
    authorization = _own_authorization(request, authorization_id)
    if not portal_services.portal_authorization_is_active(authorization=authorization):
        messages.info(request, _("This has already ended. Nothing more to do."))
        return redirect("portal:home")
    if request.method == "POST":
        portal_services.portal_authorization_revoke(
            patient_id=request.portal_patient_id, authorization_id=authorization.pk
        )
        # The purpose's name as staff wrote it, never lower-cased (issue 17, item 5).
        messages.success(
            request,
            _("Done. We will not send you messages about “%(name)s” any more.") % {"name": authorization.purpose.shown_name},
        )
        return redirect("portal:home")
    return render(request, "consent/portal/revoke_confirm.html", {"authorization": authorization})
