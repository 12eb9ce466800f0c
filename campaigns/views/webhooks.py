"""Mail provider webhooks: Amazon SES bounce and complaint notifications through Amazon SNS (R-BOUNCE-SUPPRESS).

django-anymail's SES tracking view does the provider's part: HTTP basic auth against ANYMAIL["WEBHOOK_SECRET"]
(SNS sends the credentials of the subscription URL, https://user:password@host/webhooks/amazon-ses/tracking/),
the SNS message checks, and parsing SES events into tracking events. What is ours:

- refused (404) while no WEBHOOK_SECRET is configured: anymail would only warn and accept anyone's posts;
- the SNS message signature is verified (anymail leaves it for later): the signing certificate is fetched over
  https from an SNS host only, cached per process, and must verify the message's canonical string
  (SignatureVersion 1: SHA1, 2: SHA256), so a leaked webhook secret alone cannot forge a bounce;
- notifications from a topic outside HIPAAMAIL_SES_TOPIC_ARNS (when set) are refused;
- subscription confirmation without boto3: after the basic auth passed, the SubscribeURL is fetched, only when
  it is an https URL on an SNS host (sns.<region>.amazonaws.com), never anywhere else;
- each bounce or complaint goes to campaigns.sending.bounces.delivery_bounce_record, which finds the delivery by our
  Message-ID in the SES event's copy of the headers;
- malformed posts get a 400, never a 500; nothing logged holds an address or the body (R-NO-PHI-LEAK).
"""
import base64
import logging
import re
from functools import lru_cache
from urllib.parse import urlsplit

import requests
from anymail.exceptions import AnymailError, AnymailWebhookValidationFailure
from anymail.utils import get_anymail_setting
from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView
from anymail.webhooks.base import AnymailBaseWebhookView
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.conf import settings
from django.http import HttpResponse

from campaigns.sending.bounces import BounceKind, delivery_bounce_record

logger = logging.getLogger(__name__)

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# SES bounceType -> ours. "Undetermined": SES could not tell; it counts as soft (three within 30 days suppress).
_BOUNCE_KINDS = {"Permanent": BounceKind.HARD, "Transient": BounceKind.SOFT, "Undetermined": BounceKind.SOFT}


# What SNS signs, per message type, in this order, as "Name\nvalue\n" (Subject only when present).
_SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_SNS_SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


def _is_sns_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or "")) and not parts.username and not parts.port


@lru_cache(maxsize=16)
def _sns_certificate(url: str) -> x509.Certificate:
    """The signing certificate at an SNS URL (checked by the caller), fetched over verified TLS, once per process."""
    response = requests.get(url, timeout=10, allow_redirects=False)
    response.raise_for_status()
    return x509.load_pem_x509_certificate(response.content)


def sns_signature_verify(sns_message: dict) -> None:
    """Raise AnymailWebhookValidationFailure unless Amazon SNS signed this message."""
    fields = _SNS_SIGNED_FIELDS.get(sns_message.get("Type"))
    algorithm = _SNS_SIGNATURE_HASHES.get(str(sns_message.get("SignatureVersion")))
    url = str(sns_message.get("SigningCertURL", ""))
    if fields is None or algorithm is None or not _is_sns_url(url) or not urlsplit(url).path.endswith(".pem"):
        raise AnymailWebhookValidationFailure("SNS message is not signed in a way we check")
    try:
        signed = "".join(
            f"{name}\n{sns_message[name]}\n" for name in fields if name != "Subject" or name in sns_message
        ).encode("utf-8")
        signature = base64.b64decode(sns_message["Signature"], validate=True)
        _sns_certificate(url).public_key().verify(signature, signed, padding.PKCS1v15(), algorithm())
    except (KeyError, ValueError, TypeError, InvalidSignature):
        raise AnymailWebhookValidationFailure("SNS message signature does not verify") from None


def _ses_message_id(ses_event: dict) -> str:
    """Our Message-ID as the SES event repeats it: the original headers first, else commonHeaders."""
    mail = ses_event.get("mail") or {}
    for header in mail.get("headers") or []:
        if str(header.get("name", "")).lower() == "message-id":
            return str(header.get("value", ""))
    return str((mail.get("commonHeaders") or {}).get("messageId", ""))


def _ses_status(ses_event: dict, recipient: str) -> str:
    for bounced in (ses_event.get("bounce") or {}).get("bouncedRecipients") or []:
        if str(bounced.get("emailAddress", "")).lower() == (recipient or "").lower():
            return str(bounced.get("status", ""))
    return ""


class SesTrackingWebhookView(AmazonSESTrackingWebhookView):
    warn_if_no_basic_auth = False  # we refuse instead (see post)

    def __init__(self, **kwargs):
        # AmazonSESBaseWebhookView.__init__ would load boto3 for its own confirmation call; ours needs none.
        self.auto_confirm_enabled = get_anymail_setting(
            "auto_confirm_sns_subscriptions", esp_name=self.esp_name, kwargs=kwargs, default=True
        )
        self.session_params, self.client_params = {}, {}
        AnymailBaseWebhookView.__init__(self, **kwargs)

    def validate_request(self, request):
        """Anymail calls every validate_request in the class chain; this one adds the topic allow-list and the
        SNS signature."""
        sns_message = self._parse_sns_message(request)
        allowed = settings.HIPAAMAIL_SES_TOPIC_ARNS
        if allowed and sns_message.get("TopicArn") not in allowed:
            raise AnymailWebhookValidationFailure("SNS topic not allowed")
        if settings.HIPAAMAIL_SES_VERIFY_SNS_SIGNATURES:
            sns_signature_verify(sns_message)

    def auto_confirm_sns_subscription(self, sns_message):
        if not self.auto_confirm_enabled:
            return
        url = str(sns_message.get("SubscribeURL", ""))
        if not _is_sns_url(url):
            raise AnymailWebhookValidationFailure("SubscribeURL is not an Amazon SNS address")
        response = requests.get(url, timeout=10, allow_redirects=False)
        response.raise_for_status()
        logger.info("confirmed the SNS subscription of topic %s", sns_message.get("TopicArn"))

    def post(self, request, *args, **kwargs):
        if not self.basic_auth:
            return HttpResponse(status=404)  # not configured: no webhook here
        if not request.META.get("HTTP_AUTHORIZATION"):
            # SNS sends the credentials only after a 401 that asks for them.
            response = HttpResponse(status=401)
            response["WWW-Authenticate"] = 'Basic realm="Anymail WEBHOOK_SECRET"'
            return response
        try:
            self.run_validators(request)
            events = self.parse_events(request)
        except AnymailWebhookValidationFailure as error:
            # anymail's messages name the check that failed, never the body.
            logger.warning("SES webhook refused: %s", error)
            return HttpResponse(status=400)
        except (AnymailError, ValueError, KeyError, TypeError, AttributeError, requests.RequestException) as error:
            logger.warning("SES webhook could not be read (%s)", type(error).__name__)
            return HttpResponse(status=400)
        for event in events:
            self.event_record(event)
        return HttpResponse()

    def event_record(self, event) -> None:
        ses_event = event.esp_event or {}
        if event.event_type == "bounced":
            bounce_type = (ses_event.get("bounce") or {}).get("bounceType", "")
            kind = _BOUNCE_KINDS.get(bounce_type)
            if kind is None:
                return
            status = _ses_status(ses_event, event.recipient)
        elif event.event_type == "complained":
            kind, status = BounceKind.COMPLAINT, ""
        else:
            return  # deliveries, sends, opens: not ours to record here
        result = delivery_bounce_record(
            message_id=_ses_message_id(ses_event),
            recipients=[event.recipient or ""],
            kind=kind,
            status=status,
            source="ses",
        )
        logger.info("SES %s notification: %s", kind, result)


amazon_ses_tracking = SesTrackingWebhookView.as_view()
