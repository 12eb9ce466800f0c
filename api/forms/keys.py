"""The form an administrator fills to create an API key: input shape only (api.keys.api_key_create decides)."""
from datetime import datetime, time

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from api.scopes import SCOPES


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100, label=_("Name"), help_text=_("The system this key is for, e.g. “Epic nightly sync” or “CRM”.")
    )
    source = forms.SlugField(
        max_length=50,
        required=False,
        label=_("Source system"),
        help_text=_(
            "Events are recognised as duplicates per source. Give a new key for the same system the same "
            "source. Empty: made from the name."
        ),
    )
    scopes = forms.MultipleChoiceField(
        choices=list(SCOPES.items()),
        widget=forms.CheckboxSelectMultiple,
        label=_("What the key may do"),
        help_text=_("Give only what the system needs."),
    )
    expires_on = forms.DateField(
        required=False,
        label=_("Expires on"),
        help_text=_("Optional. The key stops working at the end of this day (organisation time)."),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    rate_limit_per_minute = forms.IntegerField(
        min_value=1, max_value=100_000, initial=600, label=_("Calls per minute"),
        help_text=_("More calls in a minute are answered 429 with Retry-After."),
    )

    def clean_expires_on(self):
        day = self.cleaned_data.get("expires_on")
        if day is not None and day < timezone.localdate():
            raise forms.ValidationError(_("Choose today or a later day."))
        return day

    def expires_at(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        return timezone.make_aware(datetime.combine(day, time(23, 59, 59)))
