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


def _send(*, name: str, to: str, context: dict, attachments: list[tuple[str, bytes, str]] = ()) -> None:
    context = {
        "organisation": settings.HIPAAMAIL_ORGANISATION_NAME,
        "postal_address": settings.HIPAAMAIL_POSTAL_ADDRESS,
        "site_url": settings.SITE_URL.rstrip("/"),
        **context,
    }
    subject = " ".join(render_to_string(f"consent/email/{name}.subject.txt", context).split())
    message = EmailMultiAlternatives(
        subject=subject, body=render_to_string(f"consent/email/{name}.txt", context), to=[to]
    )
    message.attach_alternative(render_to_string(f"consent/email/{name}.html", context), "text/html")
    for filename, content, mimetype in attachments:
        message.attach(filename, content, mimetype)
    message.send()


def invitation_send(*, invitation, patient, url: str) -> None:
    _send(
        name="invitation",
        to=patient.email,
        context={"url": url, "purpose": invitation.purpose, "expires_at": invitation.expires_at},
    )


def sign_in_code_send(*, patient, code: str, minutes: int) -> None:
    _send(name="sign_in_code", to=patient.email, context={"code": code, "minutes": minutes})


def authorization_copy_send(*, authorization, patient) -> None:
    authorization.pdf.open("rb")
    try:
        content = authorization.pdf.read()
    finally:
        authorization.pdf.close()
    _send(
        name="signed_copy",
        to=patient.email,
        context={"authorization": authorization, "purpose": authorization.purpose},
        attachments=[("signed-authorization.pdf", content, "application/pdf")],
    )
