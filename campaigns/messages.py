"""Composing campaign messages: render a campaign once per batch, assemble each recipient's bytes from it.

Composing sends nothing: campaigns.services holds the one sender and campaigns.transport the ways out.

Rendering a campaign through Django templates and `EmailMultiAlternatives` costs about 2.3 ms of CPU per message
(NOTES.md, "Sending throughput"), too much for 1,000 messages per second on two cores. So `CampaignRender` renders
the subject, text and HTML once per batch, with a random per-batch placeholder where each recipient's unsubscribe
URL goes (128 random bits: content cannot contain it), builds the fixed headers once with the stdlib email package,
and `assemble` makes one recipient's message by substitution and quoted-printable encoding (binascii, in C):

    multipart/alternative, text/plain and text/html in UTF-8, quoted-printable (lines of at most 76 characters),
    per-recipient To, Date, Message-ID, List-Unsubscribe and List-Unsubscribe-Post (R-RFC8058), and the
    organisation's postal address in both footers (R-CANSPAM-ADDRESS).

The content (campaigns.content: the template, the marketer's introduction, the approved blocks) is rendered,
sanitised and CSS-inlined once too, with a random placeholder for each merge field it uses; `assemble`
substitutes each recipient's values, HTML-escaped in the HTML part and plain in the text part (ADR 0005).
"""
import binascii
import html
import secrets
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

from django.conf import settings
from django.core import signing
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe

from campaigns.content import CampaignContent, content_of, content_render, merge_values_for_deliveries
from campaigns.tracking import tracking_apply

_UNSUBSCRIBE_SALT = "campaigns.unsubscribe"
# Characters that make an address unsafe to write into a header or an SMTP command as it is.
_ADDRESS_UNSAFE = frozenset('\r\n<>,;"() \t\\')


def _signer() -> signing.Signer:
    return signing.Signer(salt=_UNSUBSCRIBE_SALT)


def unsubscribe_token(delivery_id: int) -> str:
    """A signed, unguessable token naming one delivery and nothing else (no PHI in URLs)."""
    return _signer().sign(str(delivery_id))


def unsubscribe_token_read(token: str) -> int | None:
    """The delivery id a token names, or None when the token is not one of ours."""
    try:
        return int(_signer().unsign(token))
    except (signing.BadSignature, ValueError):
        return None


def message_id_parts() -> tuple[str, str]:
    """What goes before and after the delivery id in its Message-ID (for computing it in SQL)."""
    return "<delivery-", f"@{settings.HIPAAMAIL_MESSAGE_ID_DOMAIN}>"


def message_id_for(delivery_id: int) -> str:
    before, after = message_id_parts()
    return f"{before}{delivery_id}{after}"


def unsubscribe_url_for_token(token: str) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("unsubscribe", kwargs={"token": token})


def unsubscribe_url_for(delivery_id: int) -> str:
    return unsubscribe_url_for_token(unsubscribe_token(delivery_id))


@dataclass(frozen=True)
class AssembledMessage:
    """One recipient's message: the exact bytes for the mail server, and its parts for tests and the demo."""

    from_address: str  # the envelope sender (MAIL FROM)
    from_header: str
    to_address: str  # the envelope recipient (RCPT TO)
    subject: str
    message_id: str
    unsubscribe_url: str
    headers: dict[str, str]  # the per-recipient headers, as written
    text: str
    html: str
    raw: bytes  # RFC 5322 message, CRLF line endings


def _qp(text: str) -> bytes:
    """Quoted-printable body with CRLF line endings and soft breaks at 76 characters."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("utf-8")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def _envelope_address(address: str) -> str:
    """The address as it goes into RCPT TO: the domain in IDNA when it is not ASCII."""
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def _to_header(address: str) -> str:
    if address.isascii() and not (_ADDRESS_UNSAFE & set(address)):
        return address
    # Rare: let the email package encode it (an internationalised local part, or characters to quote).
    message = EmailMessage(policy=SMTP)
    message["To"] = address
    return message.as_bytes().decode("ascii").split(":", 1)[1].strip()


# How many of a sending batch's recipients are read at once when the sender does not pass their values.
_VALUES_PREFETCH = 1000


class CampaignRender:
    """A campaign rendered once; `assemble` builds each recipient's message from it in a few microseconds.

    `content` defaults to the campaign's saved content (the editor passes unsaved content for its preview);
    `allowed_fields` defaults to the merge fields the purpose's current form lists (R-SEND-SCOPE). Content that
    is not allowed raises campaigns.content.ContentError (a ValueError): nothing is sent rather than that."""

    def __init__(self, *, campaign, content: CampaignContent | None = None, allowed_fields=None):
        self.campaign = campaign
        content = content if content is not None else content_of(campaign)
        rendered = content_render(content, allowed_fields=allowed_fields)
        # field -> placeholder, for the merge fields the content uses (none: nothing to substitute).
        self.fields = rendered.placeholders
        self._values: dict[int, dict[str, str]] = {}
        self.placeholder = "hmunsub" + secrets.token_hex(16)
        context = {
            "content_html": mark_safe(rendered.html),  # sanitised by campaigns.content.html_sanitise
            "content_text": rendered.text,
            "organisation": settings.HIPAAMAIL_ORGANISATION_NAME,
            "postal_address": settings.HIPAAMAIL_POSTAL_ADDRESS,  # R-CANSPAM-ADDRESS
            "unsubscribe_url": self.placeholder,
            "purpose_name": content.purpose.name,
        }
        self.text_template = render_to_string("campaigns/email/marketing.txt", context)
        self.html_template = self._html_final(render_to_string("campaigns/email/marketing.html", context))
        self.subject = content.subject
        self.from_header = settings.DEFAULT_FROM_EMAIL
        fixed = EmailMessage(policy=SMTP)  # folds and encodes the subject and sender; refuses CR/LF in them
        fixed["From"] = self.from_header
        fixed["Subject"] = self.subject
        # R-CANSPAM-HEADERS: replies go to the organisation's own monitored address, never a no-reply void.
        fixed["Reply-To"] = settings.HIPAAMAIL_REPLY_TO
        fixed["MIME-Version"] = "1.0"
        self.from_address = _envelope_address(fixed["From"].addresses[0].addr_spec)
        # "=_" never occurs in quoted-printable output, so the boundary cannot occur in a body.
        self.boundary = "=_hm" + secrets.token_hex(16)
        self._fixed_headers = fixed.as_bytes().rstrip(b"\r\n") + b"\r\n"
        self._content_type = f'Content-Type: multipart/alternative; boundary="{self.boundary}"\r\n'.encode("ascii")
        self._text_head = (
            f"--{self.boundary}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode("ascii")
        self._html_head = (
            f"\r\n--{self.boundary}\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode("ascii")
        self._end = f"\r\n--{self.boundary}--\r\n".encode("ascii")
        self._signer = _signer()
        self._unsubscribe_url = unsubscribe_url_for_token(self.placeholder)
        self._date_second = -1
        self._date = ""

    def _html_final(self, document: str) -> str:
        """The one place the message's final HTML is produced, once per batch: opt-in open and click tracking
        (campaigns.tracking; unchanged unless the purpose turns it on) rewrites links here, with a placeholder of
        its own for the recipient's token, substituted in `assemble` like the others."""
        self.tracking = tracking_apply(document, campaign=self.campaign, keep=[self.placeholder, *self.fields.values()])
        return self.tracking.html

    def _recipient_values(self, delivery_id: int) -> dict[str, str]:
        """The recipient's merge values, read for the rest of the batch at the first miss (the sender assembles
        in delivery id order), so a batch costs a query or two, not one per message."""
        values = self._values.get(delivery_id)
        if values is None:
            self._values.update(
                merge_values_for_deliveries(
                    campaign_id=self.campaign.pk, from_delivery_id=delivery_id, fields=self.fields,
                    limit=_VALUES_PREFETCH,
                )
            )
            values = self._values.get(delivery_id)
        if values is None:  # not queued (a test, a re-assembly): read that one delivery
            found = merge_values_for_deliveries(
                campaign_id=self.campaign.pk, delivery_ids=[delivery_id], fields=self.fields
            )
            if delivery_id not in found:
                raise ValueError(f"Delivery {delivery_id} is not one of campaign {self.campaign.pk}'s deliveries.")
            values = found[delivery_id]
        return values

    def _date_header(self) -> str:
        now = int(time.time())
        if now != self._date_second:
            self._date_second, self._date = now, formatdate(now, usegmt=True)
        return self._date

    def assemble(
        self, *, delivery_id: int, to_address: str, merge_values: dict[str, str] | None = None,
        message_id: str | None = None,
    ) -> AssembledMessage:
        """One recipient's message. `merge_values` (the synthetic patient of a preview or test send) replaces
        reading the delivery's patient; `message_id` replaces the delivery's (a test send has no delivery)."""
        unsubscribe_url = self._unsubscribe_url.replace(self.placeholder, self._signer.sign(str(delivery_id)))
        message_id = message_id or message_id_for(delivery_id)
        text, html_text = self.text_template, self.html_template
        if self.fields:
            values = merge_values if merge_values is not None else self._recipient_values(delivery_id)
            for name, placeholder in self.fields.items():
                value = " ".join(str(values.get(name, "")).split())  # one line: no CR/LF from a value
                text = text.replace(placeholder, value)
                html_text = html_text.replace(placeholder, html.escape(value))
        text = text.replace(self.placeholder, unsubscribe_url)
        html_text = html_text.replace(self.placeholder, html.escape(unsubscribe_url))
        html_text = self.tracking.for_recipient(html_text, delivery_id=delivery_id)
        headers = {
            "To": _to_header(to_address),
            "Date": self._date_header(),
            "Message-ID": message_id,
            # R-RFC8058: one-click unsubscribe, a POST to this URL with no cookie and no login.
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("ascii")
        raw = b"".join(
            (
                self._fixed_headers,
                head,
                self._content_type,
                b"\r\n",
                self._text_head,
                _qp(text),
                self._html_head,
                _qp(html_text),
                self._end,
            )
        )
        return AssembledMessage(
            from_address=self.from_address,
            from_header=self.from_header,
            to_address=_envelope_address(to_address),
            subject=self.subject,
            message_id=message_id,
            unsubscribe_url=unsubscribe_url,
            headers=headers,
            text=text,
            html=html_text,
            raw=raw,
        )
