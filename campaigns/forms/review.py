"""Campaign review forms: input shape only. The rules live in campaigns.services and campaigns.services.lifecycle."""
from datetime import datetime

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts.reentry import WRONG_CODE
from campaigns.scheduling import schedule_local_to_utc, schedule_time_check, timezone_choices, timezone_is_known
from campaigns.services.lifecycle import COMMENT_MAX_LENGTH

_LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")


class PasskeyStepUpInput(forms.HiddenInput):
    """The nonce of a passkey step-up (accounts.reentry), put here by static/js/passkey-stepup.js. The request
    that carries it spends it, so it is never rendered back."""

    def format_value(self, value):
        return None


def passkey_stepup_field() -> forms.CharField:
    return forms.CharField(required=False, strip=True, widget=PasskeyStepUpInput(attrs={"data-passkey-stepup": ""}))


class SecondFactorFields:
    """The second factor again (R-SEC-MFA): a code typed in `code`, or a passkey step-up in `passkey_stepup`;
    either one will do, so the code is optional when a step-up is sent. With neither, the code field says what a
    wrong code does. Whether the code or the step-up is right is accounts.reentry's to check (and audit)."""

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("code") and not cleaned.get("passkey_stepup") and "code" not in self.errors:
            self.add_error("code", WRONG_CODE)
        return cleaned


class SecondFactorForm(SecondFactorFields, forms.Form):
    code = forms.CharField(
        max_length=16,
        required=False,
        label=_("Code from your authenticator app"),
        help_text=_("Re-enter your second factor to confirm."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    passkey_stepup = passkey_stepup_field()


class RejectForm(forms.Form):
    comment = forms.CharField(
        max_length=COMMENT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
        label=_("Why is it rejected?"),
        help_text=_("The author reads this on their campaign. Write about the content, never about a patient."),
        error_messages={"required": _("Say why the campaign is rejected: the comment is required.")},
    )


class ScheduleForm(SecondFactorForm):
    """A wall-clock time in a chosen IANA zone; `cleaned_data["send_at"]` is the aware UTC instant. The page's
    script preselects the browser's own zone; without script the site's zone is the default."""

    send_at = forms.CharField(
        label=_("Date and time"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        error_messages={"required": _("Enter the date and time to send at.")},
    )
    timezone = forms.CharField(
        label=_("Time zone"),
        widget=forms.Select(attrs={"data-browser-timezone": ""}),
        error_messages={"required": _("Choose a time zone from the list.")},
    )
    field_order = ["send_at", "timezone", "code"]

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", "schedule")
        super().__init__(*args, **kwargs)
        chosen = self.data.get(self.add_prefix("timezone"), "") if self.is_bound else self.initial.get("timezone", "")
        self.fields["timezone"].widget.choices = timezone_choices(chosen)
        if not self.is_bound and not self.initial.get("timezone"):
            self.initial["timezone"] = settings.TIME_ZONE

    def clean_send_at(self) -> datetime:
        value = self.cleaned_data["send_at"].strip()
        for pattern in _LOCAL_FORMATS:
            try:
                return datetime.strptime(value, pattern)
            except ValueError:
                continue
        raise ValidationError(_("Enter the date and time as YYYY-MM-DD HH:MM, for example 2026-12-01 09:00."))

    def clean_timezone(self) -> str:
        name = self.cleaned_data["timezone"].strip()
        if not timezone_is_known(name):
            raise ValidationError(_("Choose a time zone from the list."))
        return name

    def clean(self):
        cleaned = super().clean()
        local, name = cleaned.get("send_at"), cleaned.get("timezone")
        if isinstance(local, datetime) and name:
            try:
                instant = schedule_local_to_utc(local=local, timezone_name=name)
                # Checked here so a time in the past does not spend the second factor; the service checks again.
                schedule_time_check(instant)
            except ValidationError as error:
                self.add_error("send_at", error)
            else:
                cleaned["send_at"] = instant
        return cleaned
