"""Input shapes of the patient portal. The rules (what a valid signature needs) live in
consent.services.signing; these only carry what was typed."""
from django import forms

SIGNING_MEANS = (
    "I am signing this form electronically. Typing my name has the same effect as my handwritten signature."
)


class EmailForm(forms.Form):
    email = forms.EmailField(
        label="Your email address",
        error_messages={
            "required": "Type your email address.",
            "invalid": "This does not look like an email address. Check it and try again.",
        },
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )


class CodeForm(forms.Form):
    code = forms.CharField(
        label="The 6-digit code from the email",
        max_length=20,
        error_messages={"required": "Type the code from the email."},
        widget=forms.TextInput(
            attrs={"inputmode": "numeric", "autocomplete": "one-time-code", "pattern": "[0-9 ]*", "size": 8}
        ),
    )


class SignForm(forms.Form):
    PATIENT = "patient"
    REPRESENTATIVE = "representative"

    text_hash = forms.CharField(widget=forms.HiddenInput, required=False)
    signer = forms.ChoiceField(
        label="Who is signing?",
        choices=[(PATIENT, "I am the patient"), (REPRESENTATIVE, "I am the patient's personal representative")],
        initial=PATIENT,
        widget=forms.RadioSelect,
    )
    representative_authority = forms.CharField(
        label="If you are the personal representative: how are you allowed to act for the patient?",
        help_text="For example: parent of a minor child, legal guardian, or health care power of attorney.",
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    signature_name = forms.CharField(
        label="Type your full name to sign",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    intent = forms.BooleanField(label=SIGNING_MEANS, required=False)
