"""The staff patient record: compliance officers and administrators only (R-MIN-NECESSARY; marketers get
404), every view of it audited (R-SEC-AUDIT). Identifiers never travel in a URL: the search is a POST and
the record's URL holds the numeric id only (R-NO-PHI-LEAK)."""
import mimetypes

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from audit import actions
from audit.services import audit_record
from consent import documents
from consent.events import attribute_label, event_type_label
from consent.forms.patients import (
    DefectForm,
    ExpiryEventForm,
    InvitationForm,
    PatientSearchForm,
    WrittenAuthorizationForm,
    WrittenRevocationForm,
    start_of_day,
)
from consent.models import AuthorizationDefect, ExpiryEvent, Language
from consent.permissions import access_authorization_by_id, access_consent_staff, access_patient_by_id
from consent.selectors import patients as selectors_patients
from consent.selectors.events import patient_event_list
from consent.services.authorizations import authorization_defect_record, expiry_event_record
from consent.services.patients import patient_language_set
from consent.services.signing import invitation_create, invitation_link
from consent.services.written import authorization_written_record, revocation_written_record


def _patient_url(patient_id: int) -> str:
    return f"/consent/patients/{patient_id}/"


@require_http_methods(["GET", "HEAD", "POST"])
def patient_search(request):
    access_consent_staff(request.user)
    form = PatientSearchForm(request.POST if request.method == "POST" else None)
    not_found = False
    if request.method == "POST" and form.is_valid():
        patient = selectors_patients.patient_find(
            email=form.cleaned_data["email"], external_id=form.cleaned_data["external_id"]
        )
        audit_record(
            actor=request.user,
            action=actions.PATIENT_SEARCHED,
            object_type="patient",
            object_id=patient.pk if patient else "",
            patient_id=patient.pk if patient else None,
            details={"by": "email" if form.cleaned_data["email"] else "external_id", "found": patient is not None},
        )
        if patient is not None:
            return redirect("consent:patient_detail", patient_id=patient.pk)
        not_found = True
    return render(request, "consent/patients/search.html", {"form": form, "not_found": not_found})


# The care events the record shows, newest first; older ones are in the audit history and the API.
EVENTS_SHOWN = 50


def _care_events(patient_id: int) -> list[dict]:
    return [
        {
            "event": event,
            "label": event_type_label(event.type),
            "attributes": [(attribute_label(name), value) for name, value in sorted(event.attributes.items())],
        }
        for event in patient_event_list(patient_id=patient_id)[:EVENTS_SHOWN]
    ]


def _render_record(request, patient, *, written_form=None, status=200):
    rows = selectors_patients.patient_authorization_rows(patient_id=patient.pk)
    care_events = _care_events(patient.pk)
    details = {"authorization_ids": [row.authorization.pk for row in rows]}
    if care_events:
        details["event_ids"] = [item["event"].pk for item in care_events]
    audit_record(
        actor=request.user,
        action=actions.PATIENT_VIEWED,
        object_type="patient",
        object_id=patient.pk,
        patient_id=patient.pk,
        details=details,
    )
    context = {
        "patient": patient,
        "conditions": sorted(patient.conditions.values_list("code", flat=True)),
        "rows": rows,
        "care_events": care_events,
        "events_shown": EVENTS_SHOWN,
        "written_form": written_form or WrittenAuthorizationForm(),
        "invitation_form": InvitationForm(prefix="invite"),
        "languages": Language.choices,
    }
    return render(request, "consent/patients/detail.html", context, status=status)


@require_safe
def patient_detail(request, patient_id: int):
    patient = access_patient_by_id(request.user, patient_id)
    return _render_record(request, patient)


@require_POST
def patient_written_authorization(request, patient_id: int):
    patient = access_patient_by_id(request.user, patient_id)
    form = WrittenAuthorizationForm(request.POST, request.FILES)
    if form.is_valid():
        data = form.cleaned_data
        form_version = data["form_version"]
        text = documents.form_text(form_version) if form_version else ""
        try:
            authorization = authorization_written_record(
                actor=request.user,
                patient=patient,
                purpose=data["purpose"],
                form_version=form_version,
                document_text=text,
                text_hash=documents.text_hash(text) if text else "",
                signed_on=start_of_day(data["signed_on"]),
                expires_at=start_of_day(data["expires_on"]) if data["expires_on"] else None,
                expiry_event=data["expiry_event"],
                signature_name=data["signature_name"],
                signed_by_representative=data["signed_by_representative"],
                representative_authority=data["representative_authority"],
                scan=data["scan"],
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Written authorization #%(id)s recorded.") % {"id": authorization.pk})
            return redirect("consent:patient_detail", patient_id=patient.pk)
    return _render_record(request, patient, written_form=form, status=400)


def _confirm(request, patient_id, authorization_id, *, form_class, template, act):
    """A confirmation page for an action that ends coverage; POST with the box ticked does it."""
    authorization = access_authorization_by_id(request.user, patient_id, authorization_id)
    state = selectors_patients.authorization_state(authorization)
    form = form_class(request.POST, request.FILES) if request.method == "POST" else form_class()
    if request.method == "POST" and form.is_valid():
        try:
            message = act(authorization, form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, message)
            return redirect("consent:patient_detail", patient_id=authorization.patient_id)
    audit_record(
        actor=request.user,
        action=actions.PATIENT_VIEWED,
        object_type="patient",
        object_id=authorization.patient_id,
        patient_id=authorization.patient_id,
        details={"authorization_ids": [authorization.pk]},
    )
    context = {
        "patient": authorization.patient,
        "authorization": authorization,
        "state_label": selectors_patients.STATE_LABELS[state],
        "form": form,
    }
    return render(request, template, context, status=400 if request.method == "POST" else 200)


@require_http_methods(["GET", "HEAD", "POST"])
def patient_written_revocation(request, patient_id: int, authorization_id: int):
    def act(authorization, data):
        revocations = revocation_written_record(
            actor=request.user, authorization_id=authorization.pk, scan=data["scan"]
        )
        ids = ", ".join(f"#{revocation.authorization_id}" for revocation in revocations)
        return _("Written revocation recorded: authorization %(ids)s no longer covers this patient.") % {"ids": ids}

    return _confirm(
        request,
        patient_id,
        authorization_id,
        form_class=WrittenRevocationForm,
        template="consent/patients/revoke.html",
        act=act,
    )


@require_http_methods(["GET", "HEAD", "POST"])
def patient_expiry_event(request, patient_id: int, authorization_id: int):
    def act(authorization, data):
        if ExpiryEvent.objects.filter(authorization_id=authorization.pk).exists():
            raise ValidationError(_("An expiry event is already recorded for this authorization."))
        expiry_event_record(
            actor=request.user,
            authorization_id=authorization.pk,
            occurred_at=start_of_day(data["occurred_on"]),
            source="staff",
        )
        return _("Expiry event recorded: authorization #%(id)s ended on %(day)s.") % {
            "id": authorization.pk,
            "day": f"{data['occurred_on']:%Y-%m-%d}",
        }

    return _confirm(
        request,
        patient_id,
        authorization_id,
        form_class=ExpiryEventForm,
        template="consent/patients/expiry_event.html",
        act=act,
    )


@require_http_methods(["GET", "HEAD", "POST"])
def patient_defect(request, patient_id: int, authorization_id: int):
    def act(authorization, data):
        if AuthorizationDefect.objects.filter(authorization_id=authorization.pk, reason=data["reason"]).exists():
            raise ValidationError(_("This defect is already recorded for this authorization."))
        authorization_defect_record(actor=request.user, authorization_id=authorization.pk, reason=data["reason"])
        return _("Defect recorded: authorization #%(id)s no longer covers this patient.") % {"id": authorization.pk}

    return _confirm(
        request,
        patient_id,
        authorization_id,
        form_class=DefectForm,
        template="consent/patients/defect.html",
        act=act,
    )


_DOCUMENTS = {
    "pdf": lambda authorization: authorization.pdf,
    "scan": lambda authorization: authorization.scan,
    "revocation-scan": lambda authorization: getattr(getattr(authorization, "revocation", None), "scan", None),
}


@require_safe
def patient_document(request, patient_id: int, authorization_id: int, kind: str):
    """Stream a signed PDF or a scan through the permission check (media is never served directly), audited."""
    authorization = access_authorization_by_id(request.user, patient_id, authorization_id)
    if kind not in _DOCUMENTS:
        raise Http404
    stored = _DOCUMENTS[kind](authorization)
    if not stored:
        raise Http404
    try:
        handle = stored.open("rb")
    except FileNotFoundError:
        raise Http404 from None
    audit_record(
        actor=request.user,
        action=actions.PATIENT_DOCUMENT_DOWNLOADED,
        object_type="authorization",
        object_id=authorization.pk,
        patient_id=authorization.patient_id,
        details={"kind": kind},
    )
    extension = stored.name.rsplit(".", 1)[-1].lower() if "." in stored.name else "bin"
    # A name of our own: the stored name says nothing about the patient, and neither does this.
    filename = f"authorization-{authorization.pk}-{kind}.{extension}"
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return FileResponse(handle, as_attachment=True, filename=filename, content_type=content_type)


@require_POST
def patient_language(request, patient_id: int):
    """Staff set the language of a patient's mail and forms (issue 17, item 6), for example from a phone call."""
    patient = access_patient_by_id(request.user, patient_id)
    try:
        changed = patient_language_set(
            actor=request.user, patient_id=patient.pk, language=request.POST.get("language", ""), source="staff"
        )
    except ValidationError:
        messages.error(request, _("Choose English or Spanish."))
    else:
        if changed:
            messages.success(request, _("Language saved. Their next messages and forms use it."))
    return redirect("consent:patient_detail", patient_id=patient.pk)


@require_POST
def patient_invite(request, patient_id: int):
    """Invite the patient to sign. The token is shown (as a QR code) or emailed once and never stored."""
    patient = access_patient_by_id(request.user, patient_id)
    form = InvitationForm(request.POST, prefix="invite")
    if not form.is_valid():
        messages.error(request, _("Choose a purpose with a published form and how to invite the patient."))
        return redirect("consent:patient_detail", patient_id=patient.pk)
    try:
        _invitation, token = invitation_create(
            actor=request.user,
            patient_id=patient.pk,
            purpose_id=form.cleaned_data["purpose"].pk,
            channel=form.cleaned_data["channel"],
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("consent:patient_detail", patient_id=patient.pk)
    if form.cleaned_data["channel"] == "email":
        messages.success(request, _("The invitation was emailed to the patient."))
        return redirect("consent:patient_detail", patient_id=patient.pk)
    return render(
        request,
        "consent/patients/invitation_qr.html",
        {"patient": patient, "purpose": form.cleaned_data["purpose"], "link": invitation_link(token=token)},
    )
