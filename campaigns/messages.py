"""Composing one campaign message for one delivery. Composing sends nothing: campaigns.services holds the
one sender. Issue 5 replaces this with sandboxed templates rendered once per campaign."""
from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse

_UNSUBSCRIBE_SALT = "campaigns.unsubscribe"


def unsubscribe_token(delivery_id: int) -> str:
    """A signed, unguessable token naming one delivery and nothing else (no PHI in URLs)."""
    return signing.Signer(salt=_UNSUBSCRIBE_SALT).sign(str(delivery_id))


def unsubscribe_token_read(token: str) -> int | None:
    """The delivery id a token names, or None when the token is not one of ours."""
    try:
        return int(signing.Signer(salt=_UNSUBSCRIBE_SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        return None


def message_id_for(delivery_id: int) -> str:
    return f"<delivery-{delivery_id}@{settings.HIPAAMAIL_MESSAGE_ID_DOMAIN}>"


def message_compose(*, campaign, delivery, to_address: str) -> EmailMultiAlternatives:
    unsubscribe_url = settings.SITE_URL.rstrip("/") + reverse(
        "unsubscribe", kwargs={"token": unsubscribe_token(delivery.pk)}
    )
    context = {
        "body": campaign.body_text,
        "organisation": settings.HIPAAMAIL_ORGANISATION_NAME,
        "postal_address": settings.HIPAAMAIL_POSTAL_ADDRESS,  # R-CANSPAM-ADDRESS
        "unsubscribe_url": unsubscribe_url,
        "purpose_name": campaign.purpose.name,
    }
    message = EmailMultiAlternatives(
        subject=campaign.subject,
        body=render_to_string("campaigns/email/marketing.txt", context),
        to=[to_address],
        headers={
            "Message-ID": message_id_for(delivery.pk),
            # R-RFC8058: one-click unsubscribe, a POST to this URL with no cookie and no login.
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    message.attach_alternative(render_to_string("campaigns/email/marketing.html", context), "text/html")
    return message
