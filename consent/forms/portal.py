"""Input shapes of the patient portal. The rules (what a valid signature needs) live in
consent.services.signing; these only carry what was typed. Labels and messages are translated lazily: each page shows
them in its own language."""
from django import forms
from django.utils.translation import gettext_lazy as _

SIGNING_MEANS = _(
    "I am signing this form electronically. Typing my name has the same effect as my handwritten signature."
)


class EmailForm(forms.Form):
    email = forms.EmailField(
        label=_("Your email address"),
        error_messages={
            "required": _("Type your email address."),
            "invalid": _("This does not look like an email address. Check it and try again."),
        },
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("The 6-digit code from the email"),
        max_length=20,
        error_messages={"required": _("Type the code from the email.")},
        widget=forms.TextInput(
            attrs={"inputmode": "numeric", "autocomplete": "one-time-code", "pattern": "[0-9 ]*", "size": 8}
        ),
    )


class SignForm(forms.Form):
    PATIENT = "patient"
    REPRESENTATIVE = "representative"

    text_hash = forms.CharField(widget=forms.HiddenInput, required=False)
    # The version the page showed (English or a translation of it, ADR 0026); the service checks it may be signed.
    form_id = forms.IntegerField(widget=forms.HiddenInput, required=False)
    signer = forms.ChoiceField(
        label=_("Who is signing?"),
        choices=[(PATIENT, _("I am the patient")), (REPRESENTATIVE, _("I am the patient's personal representative"))],
        initial=PATIENT,
        widget=forms.RadioSelect,
        error_messages={"required": _("Choose who is signing."), "invalid_choice": _("Choose who is signing.")},
    )
    representative_authority = forms.CharField(
        label=_("If you are the personal representative: how are you allowed to act for the patient?"),
        help_text=_("For example: parent of a minor child, legal guardian, or health care power of attorney."),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    signature_name = forms.CharField(
        label=_("Type your full name to sign"),
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    intent = forms.BooleanField(label=SIGNING_MEANS, required=False)
