"""The text of an authorization form version, exactly as a patient reads and signs it.

One function renders it, so that the page a patient signs, the hash stored with the signature and the PDF
copy are made from the same characters (R-AUTH-COPY, R-AUTH-ESIGN).
"""
import hashlib
from datetime import date

from django.utils import dateformat, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from consent.models import AuthorizationForm, Language

# The patient fields a form may list as "information to be used" (R-AUTH-CORE-1), and so the only merge
# fields a campaign of that purpose may use (R-SEND-SCOPE). Keys are merge-field names; values are how the
# form names them to the patient.
# Lazy: each is translated where it is read, in the language of the form (form_sections) or of the page.
PATIENT_FIELDS = {
    "first_name": gettext_lazy("your first name"),
    "last_name": gettext_lazy("your last name"),
    "email": gettext_lazy("your email address"),
    "postal_code": gettext_lazy("your ZIP code"),
    "state": gettext_lazy("your state"),
    "birth_year": gettext_lazy("your year of birth"),
    "last_visit": gettext_lazy("the date of your last visit"),
    "condition_codes": gettext_lazy("the health conditions on your record"),
}


def long_date(day: date, language: str | None = None) -> str:
    """A date written out as the form's reader writes it: "June 30, 2027", "30 de junio de 2027". The English
    form is exactly what form texts were written with before languages existed, so their hashes stay the same."""
    language = language or translation.get_language() or Language.ENGLISH
    if language.startswith(Language.SPANISH):
        with translation.override(Language.SPANISH):
            return dateformat.format(day, r"j \d\e F \d\e Y")
    return f"{day:%B} {day.day}, {day.year}"


def form_expiry_text(form: AuthorizationForm) -> str:
    """In the active language (form_sections activates the form's)."""
    if form.expiry_kind == AuthorizationForm.ExpiryKind.MONTHS and form.expiry_months:
        return _("This authorization ends %(months)s months after the day you sign it.") % {
            "months": form.expiry_months
        }
    if form.expiry_kind == AuthorizationForm.ExpiryKind.DATE and form.expiry_date:
        return _("This authorization ends on %(date)s.") % {"date": long_date(form.expiry_date)}
    if form.expiry_kind == AuthorizationForm.ExpiryKind.EVENT and form.expiry_event:
        return _("This authorization ends %(event)s.") % {"event": form.expiry_event.strip().rstrip(".")}
    return ""


def form_language(form: AuthorizationForm) -> str:
    return form.language or Language.ENGLISH


def form_sections(form: AuthorizationForm) -> list[tuple[str, str]]:
    """(heading, text) pairs in reading order, in the form's own language whatever the page's; empty texts are
    left out."""
    with translation.override(form_language(form)):
        fields = ", ".join(str(PATIENT_FIELDS[name]) for name in form.merge_fields if name in PATIENT_FIELDS)
        information = form.information_description.strip()
        if fields:
            information = _("%(information)s\n\nWe will use only: %(fields)s.") % {
                "information": information, "fields": fields
            }
        sections = [
            (_("What information we will use"), information),
            (_("Who will use it"), form.authorized_party),
            (_("Who may receive it"), form.recipients_description),
            (_("Why"), form.purpose_description),
            (_("Payment we receive"), form.remuneration_statement),
            (_("When this ends"), form_expiry_text(form)),
            (
                _("Your right to stop this"),
                "\n\n".join(filter(None, [form.revocation_statement, form.revocation_address])),
            ),
            (_("Your care does not depend on this"), form.conditioning_statement),
            (_("Sharing by others"), form.redisclosure_statement),
            (_("Your signature"), form.signature_statement),
        ]
    return [(str(heading), text.strip()) for heading, text in sections if text and text.strip()]


def form_text(form: AuthorizationForm) -> str:
    """The whole text, as plain text with headings: what is shown, hashed and printed."""
    parts = [form.title.strip()]
    for heading, text in form_sections(form):
        parts.append(f"{heading}\n{text}")
    return "\n\n".join(parts) + "\n"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
