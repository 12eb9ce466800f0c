"""Account mail to a patient: the invitation to sign, the sign-in code, the copy of what they signed.

These are account messages, like allauth's account mail, not marketing: they go through Django's mail backend
directly, not through the campaign sender, and carry no unsubscribe header. Each is a
`<name>.subject.txt | .txt | .html` triplet under templates/consent/email/. Subjects name no health purpose
and no person (R-NO-PHI-LEAK).

Services call the `*_queue` functions: each hands the message to a Celery task on the "transactional" queue
(consent.tasks), which calls the `*_send` function here and retries a mail server's temporary failure. Task
arguments are ids, and secrets (a code, an invitation link) sealed with consent.crypto.
"""
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import translation

from consent.models import Language


def _send(
    *, name: str, patient, context: dict, attachments: list[tuple[str, bytes, str]] = (), language: str | None = None
) -> None:
    """Render and send one message in the patient's language (Patient.language, issue 17), or `language` when the
    message carries a document of its own language (the signed copy)."""
    language = language or patient.language or Language.ENGLISH
    with translation.override(language):
        context = {
            "organisation": settings.HIPAAMAIL_ORGANISATION_NAME,
            "postal_address": settings.HIPAAMAIL_POSTAL_ADDRESS,
            "site_url": settings.SITE_URL.rstrip("/"),
            "LANGUAGE_CODE": language,
            **context,
        }
        subject = " ".join(render_to_string(f"consent/email/{name}.subject.txt", context).split())
        body = render_to_string(f"consent/email/{name}.txt", context)
        html = render_to_string(f"consent/email/{name}.html", context)
    message = EmailMultiAlternatives(subject=subject, body=body, to=[patient.email])
    message.extra_headers["Content-Language"] = language
    message.attach_alternative(html, "text/html")
    for filename, content, mimetype in attachments:
        message.attach(filename, content, mimetype)
    message.send()


def invitation_send(*, invitation, patient, url: str) -> None:
    _send(
        name="invitation",
        patient=patient,
        context={
            "url": url,
            "purpose": invitation.purpose,
            "expires_at": invitation.expires_at,
            "renewal": invitation.channel == "renewal",
        },
    )


def sign_in_code_send(*, patient, code: str, minutes: int) -> None:
    _send(name="sign_in_code", patient=patient, context={"code": code, "minutes": minutes})


def authorization_copy_send(*, authorization, patient) -> None:
    authorization.pdf.open("rb")
    try:
        content = authorization.pdf.read()
    finally:
        authorization.pdf.close()
    form = authorization.form_version
    _send(
        name="signed_copy",
        patient=patient,
        context={"authorization": authorization, "purpose": authorization.purpose},
        attachments=[("signed-authorization.pdf", content, "application/pdf")],
        # The copy is in the language of the form signed; its message too.
        language=form.language if form is not None else None,
    )
