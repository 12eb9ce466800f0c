"""The audit log's filters (input shape only), in plain words: who, in which role, what kind of event, which
event, about what, between which days. Every field optional; a value that is not valid is reported beside its
field and the filter is not applied."""
from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from audit import sentences
from audit.selectors import ROLE_FILTERS, AuditFilters

MAX_ID = 2**63 - 1


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


class AuditFilterForm(forms.Form):
    actor = forms.TypedChoiceField(label=_("Who"), required=False, coerce=int, empty_value=None)
    role = forms.ChoiceField(label=_("Acting as"), required=False)
    kind = forms.ChoiceField(label=_("Kind of event"), required=False)
    action = forms.ChoiceField(label=_("Event"), required=False)
    object_type = forms.ChoiceField(label=_("About"), required=False)
    object_id = forms.IntegerField(
        label=_("Its number"), required=False, min_value=1, max_value=MAX_ID,
        help_text=_("The number after # (campaign #12: 12)."),
    )
    patient = forms.IntegerField(
        label=_("Patient number"), required=False, min_value=1, max_value=MAX_ID,
        help_text=_("The patient's number, as on their record page."),
    )
    campaign = forms.IntegerField(label=_("Campaign number"), required=False, min_value=1, max_value=MAX_ID)
    start = forms.DateField(
        label=pgettext_lazy("a range of days", "From"), required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    end = forms.DateField(
        label=pgettext_lazy("a range of days", "To"), required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def __init__(self, *args, actors=(), actions=(), object_types=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["actor"].choices = [("", _("Anyone"))] + [
            (user.pk, f"{user.get_full_name()} ({user.email})" if user.get_full_name() else user.email)
            for user in actors
        ]
        self.fields["role"].choices = [("", _("Any role"))] + [(key, label) for key, (label, _test) in ROLE_FILTERS.items()]
        self.fields["kind"].choices = [("", _("Every kind"))] + [(key, label) for key, (label, _s) in sentences.KINDS.items()]
        self.fields["action"].choices = [("", _("Any event"))] + sorted(
            ((action, sentences.action_label(action)) for action in actions), key=lambda choice: str(choice[1])
        )
        self.fields["object_type"].choices = [("", _("Anything"))] + sorted(
            ((kind, _first_upper(sentences.object_kind_label(kind))) for kind in object_types if kind),
            key=lambda choice: choice[1],
        )

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            raise ValidationError(_("The start date is after the end date."))
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
            role=data.get("role") or "",
            kind=data.get("kind") or "",
            action=data.get("action") or "",
            object_type=data.get("object_type") or "",
            object_id=data.get("object_id"),
            patient_id=data.get("patient"),
            campaign_id=data.get("campaign"),
            start=data.get("start"),
            end=data.get("end"),
        )
