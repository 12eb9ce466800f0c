"""Forms of the Reports page: input shape only. Each report asks for its subject, a format and the second factor;
campaigns.views.reports checks the code and campaigns.reports does the rest."""
from datetime import timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from campaigns.forms.review import SecondFactorFields, passkey_stepup_field
from campaigns.models import Campaign
from campaigns.reports.exports import CSV, PDF
from campaigns.selectors.campaigns import journey_message_of
from consent.models import Patient

# A summary over more than this is a job for the audit views and the CSV of each campaign, not one document.
SUMMARY_MAX_DAYS = 3 * 366


class _CampaignChoice(forms.ModelChoiceField):
    """Campaigns and journeys' step campaigns alike (a journey message has the same evidence), each labelled as
    what it is."""

    def label_from_instance(self, campaign: Campaign) -> str:
        journey = journey_message_of(campaign)
        if journey is not None:
            status = campaign.get_status_display().lower()
            if journey.version is not None:
                return gettext("#%(id)s · %(journey)s (version %(version)s, %(status)s)") % {
                    "id": campaign.pk, "journey": journey.label, "version": journey.version, "status": status
                }
            return f"#{campaign.pk} · {journey.label} ({status})"
        return f"#{campaign.pk} · {campaign.name} ({campaign.get_status_display().lower()})"


class _CodeInput(forms.TextInput):
    """A one-time code is never shown back: after a wrong one the field is empty again."""

    def format_value(self, value):
        return None


class _ExportForm(SecondFactorFields, forms.Form):
    """What every export asks: the format and the second factor again (R-SEC-MFA): a code, or a passkey step-up
    (campaigns.forms.review.SecondFactorFields)."""

    format = forms.ChoiceField(
        choices=[(PDF, _("PDF document")), (CSV, _("CSV spreadsheet (every row, streamed)"))],
        initial=PDF,
        widget=forms.RadioSelect,
        label=_("Format"),
    )
    code = forms.CharField(
        max_length=16,
        required=False,
        label=_("Code from your authenticator app"),
        help_text=_("Exports hold patient-level evidence: enter your second factor again to confirm."),
        widget=_CodeInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    passkey_stepup = passkey_stepup_field()

    field_order = ["format", "code"]


class CampaignEvidenceForm(_ExportForm):
    campaign = _CampaignChoice(
        queryset=Campaign.objects.order_by("-created_at", "-id"),
        label=_("Campaign"),
        help_text=_("A journey's send steps are listed too, as \"Journey message: <journey> · step N\"."),
        empty_label=_("Choose a campaign or a journey message"),
        error_messages={
            "required": _("Choose the campaign to report on."),
            "invalid_choice": _("That campaign does not exist. Choose one from the list."),
        },
    )

    field_order = ["campaign", "format", "code"]


class PatientLedgerForm(_ExportForm):
    patient = forms.IntegerField(
        min_value=1,
        label=_("Patient number"),
        help_text=_('The number on the staff patient record ("Patient #123": enter 123). Find a patient by '
                    "email or record number on the Patients page."),
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
        error_messages={
            "required": _("Enter the patient's number."),
            "invalid": _("Enter the patient's number as digits only, for example 123."),
            "min_value": _("Enter the patient's number as digits only, for example 123."),
        },
    )

    field_order = ["patient", "format", "code"]

    def clean_patient(self) -> int:
        patient_id = self.cleaned_data["patient"]
        if not Patient.objects.filter(pk=patient_id).exists():
            raise forms.ValidationError(_("No patient has the number %(number)s.") % {"number": patient_id})
        return patient_id


class ComplianceSummaryForm(_ExportForm):
    date_from = forms.DateField(
        label=_("From (first day)"),
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"required": _("Enter the first day of the period."), "invalid": _("Enter a date, as YYYY-MM-DD.")},
    )
    date_to = forms.DateField(
        label=_("To (last day, included)"),
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"required": _("Enter the last day of the period."), "invalid": _("Enter a date, as YYYY-MM-DD.")},
    )

    field_order = ["date_from", "date_to", "format", "code"]

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end:
            if end < start:
                self.add_error("date_to", _("The last day must be on or after the first day."))
            elif end - start > timedelta(days=SUMMARY_MAX_DAYS):
                self.add_error("date_to", _("Choose a period of three years or less."))
        return cleaned

    @staticmethod
    def initial_period() -> dict:
        today = timezone.localdate()
        return {"date_from": today.replace(day=1), "date_to": today}
