"""Campaign review forms: input shape only. The rules live in campaigns.services and campaigns.services_review."""
from django import forms

from campaigns.services_review import COMMENT_MAX_LENGTH


class SecondFactorForm(forms.Form):
    code = forms.CharField(
        max_length=16,
        label="Code from your authenticator app",
        help_text="Re-enter your second factor to confirm.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class RejectForm(forms.Form):
    comment = forms.CharField(
        max_length=COMMENT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
        label="Why is it rejected?",
        error_messages={"required": "Say why the campaign is rejected: the comment is required."},
    )
