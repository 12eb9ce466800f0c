"""The text of an authorization form version, exactly as a patient reads and signs it.

One function renders it, so that the page a patient signs, the hash stored with the signature and the PDF
copy are made from the same characters (R-AUTH-COPY, R-AUTH-ESIGN).
"""
import hashlib

from consent.models import AuthorizationForm

# The patient fields a form may list as "information to be used" (R-AUTH-CORE-1), and so the only merge
# fields a campaign of that purpose may use (R-SEND-SCOPE). Keys are merge-field names; values are how the
# form names them to the patient.
PATIENT_FIELDS = {
    "first_name": "your first name",
    "last_name": "your last name",
    "email": "your email address",
    "postal_code": "your ZIP code",
    "state": "your state",
    "birth_year": "your year of birth",
    "last_visit": "the date of your last visit",
    "condition_codes": "the health conditions on your record",
}


def form_expiry_text(form: AuthorizationForm) -> str:
    if form.expiry_kind == AuthorizationForm.ExpiryKind.MONTHS and form.expiry_months:
        return f"This authorization ends {form.expiry_months} months after the day you sign it."
    if form.expiry_kind == AuthorizationForm.ExpiryKind.DATE and form.expiry_date:
        return f"This authorization ends on {form.expiry_date:%B} {form.expiry_date.day}, {form.expiry_date.year}."
    if form.expiry_kind == AuthorizationForm.ExpiryKind.EVENT and form.expiry_event:
        return f"This authorization ends {form.expiry_event.strip().rstrip('.')}."
    return ""


def form_sections(form: AuthorizationForm) -> list[tuple[str, str]]:
    """(heading, text) pairs in reading order; empty texts are left out."""
    fields = ", ".join(PATIENT_FIELDS[name] for name in form.merge_fields if name in PATIENT_FIELDS)
    information = form.information_description.strip()
    if fields:
        information = f"{information}\n\nWe will use only: {fields}."
    sections = [
        ("What information we will use", information),
        ("Who will use it", form.authorized_party),
        ("Who may receive it", form.recipients_description),
        ("Why", form.purpose_description),
        ("Payment we receive", form.remuneration_statement),
        ("When this ends", form_expiry_text(form)),
        ("Your right to stop this", "\n\n".join(filter(None, [form.revocation_statement, form.revocation_address]))),
        ("Your care does not depend on this", form.conditioning_statement),
        ("Sharing by others", form.redisclosure_statement),
        ("Your signature", form.signature_statement),
    ]
    return [(heading, text.strip()) for heading, text in sections if text and text.strip()]


def form_text(form: AuthorizationForm) -> str:
    """The whole text, as plain text with headings: what is shown, hashed and printed."""
    parts = [form.title.strip()]
    for heading, text in form_sections(form):
        parts.append(f"{heading}\n{text}")
    return "\n\n".join(parts) + "\n"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
