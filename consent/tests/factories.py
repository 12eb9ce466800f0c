"""Test data made through the real services, never by writing rows by hand (STYLE.md)."""
import itertools
from datetime import timedelta

from django.utils import timezone

from consent.models import Purpose
from consent.services.authorizations import authorization_grant
from consent.services.form_versions import purpose_create
from consent.services.patients import patient_create

_serial = itertools.count(1)


def patient_make(**overrides):
    n = next(_serial)
    fields = {"email": f"patient{n}@example.org", "full_name": f"Test Patient {n}", "birth_year": 1950 + n % 50}
    fields |= overrides
    return patient_create(actor=None, **fields)


def purpose_make(**overrides):
    n = next(_serial)
    fields = {
        "code": f"purpose-{n}",
        "name": f"Purpose {n}",
        "description": "Messages about a product we offer.",
        "kind": Purpose.Kind.MARKETING,
    }
    fields |= overrides
    return purpose_create(actor=None, **fields)


def authorization_make(*, patient, purpose, expires_in=timedelta(days=365), signed_ago=timedelta(days=1), **extra):
    now = timezone.now()
    return authorization_grant(
        actor=None, patient=patient, purpose=purpose, signed_at=now - signed_ago, expires_at=now + expires_in, **extra
    )


FORM_FIELDS = {
    "information_description": "Your name, your email address, and the fact that you use a CPAP machine we supplied.",
    "merge_fields": ["first_name", "email"],
    "authorized_party": "Riverside Health, 100 River Road, Springfield, IL.",
    "recipients_description": "Our email service, which has signed a business associate agreement with us.",
    "purpose_description": "To tell you about new CPAP masks and supplies you can buy from us.",
    "expiry_kind": "months",
    "expiry_months": 24,
    "signature_statement": (
        "Typing your name is your signature. If you sign for someone else, tell us how you are allowed to act "
        "for them (your authority as their personal representative)."
    ),
    "revocation_statement": "You can stop this at any time. Use the link in any message, or our website.",
    "revocation_address": "Privacy Officer, Riverside Health\n100 River Road, Springfield, IL 62701",
    "conditioning_statement": "Your treatment, payment, enrollment and benefits do not depend on signing.",
    "redisclosure_statement": "Information we share may be shared again by the recipient and lose its protection.",
}


def form_published_make(purpose, **overrides):
    """A complete form version of `purpose`, drafted and published through the real services."""
    from consent.services import form_versions

    fields = {"title": f"Permission to send you messages about {purpose.name}", **FORM_FIELDS}
    if purpose.third_party_paid:
        fields["remuneration_statement"] = "A company that makes these products pays us to send these messages."
    fields |= overrides
    draft = form_versions.form_version_create(actor=None, purpose_id=purpose.pk)
    form_versions.form_version_update(actor=None, form_id=draft.pk, **fields)
    return form_versions.form_version_publish(actor=None, form_id=draft.pk)


# The Spanish text of FORM_FIELDS (issue 17, item 6): the same form, in plain Spanish for a patient (usted).
SPANISH_FORM_FIELDS = {
    "information_description": "Su nombre, su correo electrónico y el hecho de que usa una máquina CPAP que le dimos.",
    "authorized_party": "Riverside Health, 100 River Road, Springfield, IL.",
    "recipients_description": "Nuestro servicio de correo, que firmó con nosotros un acuerdo de socio comercial.",
    "purpose_description": "Para contarle sobre mascarillas y accesorios nuevos para su CPAP que puede comprarnos.",
    "signature_statement": (
        "Escribir su nombre es su firma. Si firma por otra persona, díganos qué le permite actuar por ella "
        "(su autoridad como su representante personal)."
    ),
    "revocation_statement": "Puede cancelar esto en cualquier momento. Use el enlace de cualquier mensaje o nuestro sitio web.",
    "revocation_address": "Oficial de Privacidad, Riverside Health\n100 River Road, Springfield, IL 62701",
    "conditioning_statement": "Su tratamiento, sus pagos, su inscripción y sus beneficios no dependen de que firme.",
    "redisclosure_statement": "Quien reciba la información puede volver a compartirla, y entonces puede perder su protección.",
}


def form_spanish_make(english, **overrides):
    """The Spanish version of a published English version, drafted, translated and published through the services."""
    from consent.services import form_versions

    draft = form_versions.form_version_translation_create(actor=None, form_id=english.pk, language="es")
    fields = {
        "title": f"Permiso para enviarle mensajes sobre {english.purpose.name_es or english.purpose.name}",
        "merge_fields": english.merge_fields,
        "expiry_kind": english.expiry_kind,
        "expiry_months": english.expiry_months,
        "expiry_date": english.expiry_date,
        "expiry_event": english.expiry_event,
        **SPANISH_FORM_FIELDS,
    }
    if english.remuneration_statement:
        fields["remuneration_statement"] = "Una empresa que fabrica estos productos nos paga para enviar estos mensajes."
    fields |= overrides
    form_versions.form_version_update(actor=None, form_id=draft.pk, **fields)
    return form_versions.form_version_publish(actor=None, form_id=draft.pk)
