"""Input shapes for the staff patient record and the FHIR import. Rules live in the services; these only
turn what was typed into typed values, with messages that never repeat a value typed (R-NO-PHI-LEAK)."""
from datetime import datetime, time

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from consent.models import AuthorizationDefect, AuthorizationForm, Purpose
from consent.services.written import SCAN_MAX_BYTES, scan_kind

FHIR_MAX_BYTES = 20 * 1024 * 1024


def start_of_day(day) -> datetime:
    """A date on paper, as the first instant of that day in the organisation's time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))


class ScanField(forms.FileField):
    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text", format_lazy(_("PDF, PNG or JPEG, at most {size} MB."), size=SCAN_MAX_BYTES // (1024 * 1024))
        )
        kwargs.setdefault("error_messages", {"required": _("Attach the scan of the signed paper.")})
        super().__init__(**kwargs)
        self.widget.attrs["accept"] = "application/pdf,image/png,image/jpeg"

    def clean(self, data, initial=None):
        upload = super().clean(data, initial)
        if upload:
            scan_kind(upload)
        return upload


class PatientSearchForm(forms.Form):
    """Exactly one identifier. POSTed, so the identifier never appears in a URL or an access log."""

    email = forms.EmailField(required=False, label=_("Email address"))
    external_id = forms.CharField(required=False, max_length=100, label=_("Record number (external id)"))

    def clean(self):
        data = super().clean()
        if bool(data.get("email")) == bool((data.get("external_id") or "").strip()):
            raise ValidationError(gettext("Enter either an email address or a record number."))
        return data


class WrittenAuthorizationForm(forms.Form):
    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.order_by("name"), label=_("Purpose"), empty_label=_("Choose a purpose")
    )
    form_version = forms.ModelChoiceField(
        queryset=AuthorizationForm.objects.filter(status=AuthorizationForm.Status.PUBLISHED)
        .select_related("purpose")
        .order_by("purpose__name", "-version"),
        required=False,
        empty_label=_("Not one of our published forms"),
        label=_("Form version printed on the paper"),
        help_text=_("When the paper is one of our printed forms, its text and hash are stored with the record."),
    )
    signed_on = forms.DateField(label=_("Date signed"), widget=forms.DateInput(attrs={"type": "date"}))
    expires_on = forms.DateField(
        required=False,
        label=_("Ends on (date)"),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Coverage ends at the start of this day."),
    )
    expiry_event = forms.CharField(
        required=False,
        max_length=300,
        label=_("Or ends when (event)"),
        help_text=_("For example: when you no longer rent equipment from us."),
    )
    signature_name = forms.CharField(max_length=200, label=_("Name as signed on the paper"))
    signed_by_representative = forms.BooleanField(required=False, label=_("Signed by a personal representative"))
    representative_authority = forms.CharField(
        required=False,
        max_length=300,
        label=_("Representative's authority"),
        help_text=_("For example: legal guardian, health care power of attorney."),
    )
    scan = ScanField(label=_("Scan of the signed paper"))

    def clean(self):
        data = super().clean()
        signed_on, expires_on = data.get("signed_on"), data.get("expires_on")
        event = (data.get("expiry_event") or "").strip()
        if signed_on and signed_on > timezone.localdate():
            self.add_error("signed_on", gettext("The signing date cannot be in the future."))
        if not expires_on and not event:
            raise ValidationError(  # R-AUTH-CORE-5
                gettext("Give the date or the event on which the authorization ends (HIPAA, 45 CFR 164.508(c)(1)(v)).")
            )
        if expires_on and event:
            raise ValidationError(gettext("Give an end date or an end event, not both."))
        if signed_on and expires_on and expires_on <= signed_on:
            self.add_error("expires_on", gettext("The end date must be after the signing date."))
        if data.get("signed_by_representative") and not (data.get("representative_authority") or "").strip():
            self.add_error(
                "representative_authority", gettext("Describe the representative's authority to act for the patient.")
            )
        purpose, form_version = data.get("purpose"), data.get("form_version")
        if purpose and form_version and form_version.purpose_id != purpose.pk:
            self.add_error("form_version", gettext("This form version is for another purpose."))
        return data


class WrittenRevocationForm(forms.Form):
    scan = ScanField(label=_("Scan of the revocation letter"))
    confirm = forms.BooleanField(
        label=_("I confirm the patient revoked this authorization in writing."),
        error_messages={"required": _("Tick the box to confirm.")},
    )


class ExpiryEventForm(forms.Form):
    occurred_on = forms.DateField(label=_("Date the event happened"), widget=forms.DateInput(attrs={"type": "date"}))
    confirm = forms.BooleanField(
        label=_("I confirm the event happened. Coverage ends from that day."),
        error_messages={"required": _("Tick the box to confirm.")},
    )

    def clean_occurred_on(self):
        day = self.cleaned_data["occurred_on"]
        if day > timezone.localdate():
            raise ValidationError(gettext("The event cannot be in the future."))
        return day


class DefectForm(forms.Form):
    reason = forms.ChoiceField(choices=AuthorizationDefect.Reason.choices, label=_("What is wrong with it"))
    confirm = forms.BooleanField(
        label=_("I confirm this authorization is defective. It stops covering at once."),
        error_messages={"required": _("Tick the box to confirm.")},
    )


class FhirImportForm(forms.Form):
    bundle = forms.FileField(
        label=_("FHIR Bundle (JSON) of Consent resources"),
        help_text=_("R4, R4B or R5. At most 20 MB."),
        error_messages={"required": _("Choose a JSON file to import.")},
    )

    def clean_bundle(self):
        upload = self.cleaned_data["bundle"]
        if upload.size > FHIR_MAX_BYTES:
            raise ValidationError(gettext("The file is larger than 20 MB."))
        return upload


class InvitationForm(forms.Form):
    """Invite the patient to sign the current form of a purpose: by email, or with a QR code shown now."""

    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.filter(forms__status=AuthorizationForm.Status.PUBLISHED).distinct().order_by("name"),
        label=_("Purpose"),
        empty_label=_("Choose a purpose"),
    )
    channel = forms.ChoiceField(
        label=_("Channel"),
        choices=[
            ("email", _("Email the patient a link")),
            ("qr", _("Show a QR code here, for the patient's phone")),
        ],
        widget=forms.RadioSelect,
        initial="email",
    )
