"""The audit log's filters (input shape only). Every field optional; a value that is not valid is reported
beside its field and the filter is not applied."""
from django import forms
from django.core.exceptions import ValidationError

from audit.selectors import AuditFilters

MAX_ID = 2**63 - 1


class AuditFilterForm(forms.Form):
    actor = forms.TypedChoiceField(label="Actor", required=False, coerce=int, empty_value=None)
    action = forms.ChoiceField(label="Action", required=False)
    patient = forms.IntegerField(
        label="Patient #", required=False, min_value=1, max_value=MAX_ID,
        help_text="The patient's number, as on their record page.",
    )
    campaign = forms.IntegerField(label="Campaign #", required=False, min_value=1, max_value=MAX_ID)
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, actors=(), actions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["actor"].choices = [("", "Anyone")] + [(user.pk, user.email) for user in actors]
        self.fields["action"].choices = [("", "Any action")] + [(action, action) for action in actions]

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            raise ValidationError("The start date is after the end date.")
        return data

    def filters(self) -> AuditFilters:
        """The filters to apply: only valid fields (an invalid one is shown with its error, not applied)."""
        if not self.is_bound:
            return AuditFilters()
        self.is_valid()  # cleans: keeps the valid fields in cleaned_data, the errors beside the others
        data = self.cleaned_data
        if self.non_field_errors():
            data = {key: value for key, value in data.items() if key not in ("start", "end")}
        return AuditFilters(
            actor_id=data.get("actor"),
            action=data.get("action") or "",
            patient_id=data.get("patient"),
            campaign_id=data.get("campaign"),
            start=data.get("start"),
            end=data.get("end"),
        )
