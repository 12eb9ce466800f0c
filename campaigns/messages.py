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


class CampaignRender:
    """A campaign rendered once; `assemble` builds each recipient's message from it in a few microseconds."""

    def __init__(self, *, campaign):
        self.campaign = campaign
        self.placeholder = "hmunsub" + secrets.token_hex(16)
        context = {
            "body": campaign.body_text,
            "organisation": settings.HIPAAMAIL_ORGANISATION_NAME,
            "postal_address": settings.HIPAAMAIL_POSTAL_ADDRESS,  # R-CANSPAM-ADDRESS
            "unsubscribe_url": self.placeholder,
            "purpose_name": campaign.purpose.name,
        }
        self.text_template = render_to_string("campaigns/email/marketing.txt", context)
        self.html_template = render_to_string("campaigns/email/marketing.html", context)
        self.subject = campaign.subject
        self.from_header = settings.DEFAULT_FROM_EMAIL
        fixed = EmailMessage(policy=SMTP)  # folds and encodes the subject and sender; refuses CR/LF in them
        fixed["From"] = self.from_header
        fixed["Subject"] = self.subject
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

    def _date_header(self) -> str:
        now = int(time.time())
        if now != self._date_second:
            self._date_second, self._date = now, formatdate(now, usegmt=True)
        return self._date

    def assemble(self, *, delivery_id: int, to_address: str) -> AssembledMessage:
        unsubscribe_url = self._unsubscribe_url.replace(self.placeholder, self._signer.sign(str(delivery_id)))
        message_id = message_id_for(delivery_id)
        text = self.text_template.replace(self.placeholder, unsubscribe_url)
        html_text = self.html_template.replace(self.placeholder, html.escape(unsubscribe_url))
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
