"""The shape of what compliance officers type when they manage purposes and author form versions.

Input shape only: the rules (a paid communication is marketing, what a publishable form contains) live in
the model's constraints and in consent.services.form_versions.
"""
from django import forms
from django.utils.translation import gettext_lazy as _

from consent.documents import PATIENT_FIELDS
from consent.models import AuthorizationForm, Purpose


class PurposeForm(forms.Form):
    code = forms.SlugField(
        max_length=50,
        label=_("Code"),
        help_text=_(
            "A short code of letters, digits and hyphens, for example cpap-supplies. Exports and FHIR use it."
        ),
    )
    name = forms.CharField(
        max_length=120, label=_("Name"), help_text=_("How staff and patients see the purpose named.")
    )
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        label=_("Plain description"),
        help_text=_("One or two short sentences a patient understands."),
    )
    name_es = forms.CharField(
        max_length=120, required=False, label=_("Name in Spanish"),
        help_text=_(
            "How Spanish-reading patients see the purpose named, for example: Suministros para CPAP. "
            "Empty: they see the name above."
        ),
    )
    description_es = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, label=_("Plain description in Spanish"),
        help_text=_("One or two short sentences in Spanish. Empty: they see the description above."),
    )
    kind = forms.ChoiceField(label=_("Kind"), choices=Purpose.Kind.choices, widget=forms.RadioSelect)
    third_party_paid = forms.BooleanField(
        required=False,
        label=_("A third party pays us for these communications"),
        help_text=_(
            "Then the communication is marketing and the form must say that we are paid (45 CFR 164.501)."
        ),
    )
    tracking_enabled = forms.BooleanField(
        required=False,
        label=_("Count opens and clicks of this purpose's messages"),
        help_text=_(
            "Off by default. When on, each message gets a tiny image and its links go through our site, so we "
            "record the first time a patient opens the message and the first time they click a link in it "
            "(the time only: no address, device or location). Marketers see the totals only, never who."
        ),
    )


def _text(label, help_text, rows: int = 3) -> forms.CharField:
    return forms.CharField(
        label=label, help_text=help_text, required=False, widget=forms.Textarea(attrs={"rows": rows})
    )


class AuthorizationFormDraftForm(forms.Form):
    """Every element and statement of 164.508(c), one field each. Nothing here can name another purpose or
    attach another document (R-AUTH-NO-COMPOUND). All fields may be empty in a draft; publishing says what
    is missing."""

    title = forms.CharField(
        max_length=200, label=_("Title"), help_text=_("The heading the patient reads first.")
    )
    information_description = _text(
        _("What information we will use (HIPAA, 45 CFR 164.508(c)(1)(i))"),
        _(
            "Specific and meaningful, for example: your name, your email address and the fact that you use a CPAP "
            "device we supplied."
        ),
    )
    merge_fields = forms.MultipleChoiceField(
        label=_("Patient fields messages may use (HIPAA, 45 CFR 164.508(c)(1)(i))"),
        help_text=_("The form lists these to the patient, and campaigns for this purpose may use only these."),
        choices=list(PATIENT_FIELDS.items()),
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    authorized_party = _text(
        _("Who will use it (HIPAA, 45 CFR 164.508(c)(1)(ii))"),
        _("The organization authorized to use the information, by name."),
        2,
    )
    recipients_description = _text(
        _("Who may receive it (HIPAA, 45 CFR 164.508(c)(1)(iii))"),
        _(
            "Named persons or a class, for example: our email service provider under a business associate agreement."
        ),
        2,
    )
    purpose_description = _text(
        _("Why (HIPAA, 45 CFR 164.508(c)(1)(iv))"), _("The purpose of the use, in plain words.")
    )
    remuneration_statement = _text(
        _("Payment we receive (HIPAA, 45 CFR 164.508(a)(3)(ii))"),
        _("Required when a third party pays for these communications; leave empty otherwise."),
        2,
    )
    expiry_kind = forms.ChoiceField(
        label=_("When this ends (HIPAA, 45 CFR 164.508(c)(1)(v))"),
        choices=AuthorizationForm.ExpiryKind.choices,
        widget=forms.RadioSelect,
        required=False,
    )
    expiry_months = forms.IntegerField(
        label=_("Number of months after signing"), required=False, min_value=1, max_value=120
    )
    expiry_date = forms.DateField(
        label=_("End date"), required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    expiry_event = forms.CharField(
        label=_("Event that ends it"),
        required=False,
        help_text=_(
            "Completes the sentence \u201cThis authorization ends \u2026\u201d, for example: when you no "
            "longer rent equipment from us."
        ),
    )
    revocation_statement = _text(
        _("Your right to stop this (HIPAA, 45 CFR 164.508(c)(2)(i))"),
        _(
            "That the patient may revoke at any time, in writing, on the web page or with the link in any message, "
            "and that this does not undo what was already done."
        ),
    )
    revocation_address = _text(
        _("Where to send a written revocation (HIPAA, 45 CFR 164.508(c)(2)(i))"), _("A postal address."), 2
    )
    conditioning_statement = _text(
        _("Your care does not depend on this (HIPAA, 45 CFR 164.508(c)(2)(ii))"),
        _("That treatment, payment, enrollment and eligibility for benefits do not depend on signing."),
        2,
    )
    redisclosure_statement = _text(
        _("Sharing by others (HIPAA, 45 CFR 164.508(c)(2)(iii))"),
        _(
            "That a recipient may share the information again and that it may then no longer be protected by "
            "federal privacy law."
        ),
        2,
    )
    signature_statement = _text(
        _("Your signature (HIPAA, 45 CFR 164.508(c)(1)(vi))"),
        _("What signing means, and that a personal representative who signs must describe their authority."),
    )

    @classmethod
    def initial_from(cls, form: AuthorizationForm) -> dict:
        return {name: getattr(form, name) for name in cls.base_fields}

    def unsaved_form_version(self, form: AuthorizationForm) -> AuthorizationForm:
        """A copy of the stored version with what was typed, to show its text and grade before saving."""
        copy = AuthorizationForm(
            purpose=form.purpose, version=form.version, **{name: getattr(form, name) for name in self.base_fields}
        )
        for name in self.base_fields:
            if name in self.cleaned_data:
                value = self.cleaned_data[name]
                setattr(copy, name, "" if value is None and name not in ("expiry_months", "expiry_date") else value)
        return copy
