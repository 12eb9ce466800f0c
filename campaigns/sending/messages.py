"""Composing campaign messages: render a campaign once per batch, assemble each recipient's bytes from it.

Composing sends nothing: campaigns.services holds the one sender and campaigns.sending.transport the ways out.

Rendering a campaign through Django templates and `EmailMultiAlternatives` costs about 2.3 ms of CPU per message
(NOTES.md, "Sending throughput"), too much for 1,000 messages per second on two cores. So `CampaignRender` renders
the subject, text and HTML once per batch, with a random per-batch placeholder where each recipient's unsubscribe
URL goes (128 random bits: content cannot contain it), builds the fixed headers once with the stdlib email package,
and `assemble` makes one recipient's message by substitution and quoted-printable encoding (binascii, in C):

    multipart/alternative, text/plain and text/html in UTF-8, quoted-printable (lines of at most 76 characters),
    per-recipient To, Date, Message-ID, List-Unsubscribe and List-Unsubscribe-Post (R-RFC8058), and the
    organisation's postal address in both footers (R-CANSPAM-ADDRESS).

The headers every receiver must be able to read (R-CANSPAM-HEADERS): To with the domain in IDNA and never an
RFC 2047 encoded word (an internationalised local part is UTF-8, RFC 6532, and the transport then asks for
SMTPUTF8); Date in RFC 5322 section 3.3 form with a +0000 zone; a Message-ID under our sending domain that no
other installation can give (see `message_id_parts`).

The content (campaigns.content: the template, the marketer's introduction, the approved blocks) is rendered,
sanitised and CSS-inlined once too, with a random placeholder for each merge field it uses; `assemble`
substitutes each recipient's values, HTML-escaped in the HTML part and plain in the text part (ADR 0005).
"""
import binascii
import hashlib
import hmac
import html
import re
import secrets
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, parseaddr
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.safestring import mark_safe

from campaigns.content import CampaignContent, content_of, content_render, merge_values_for_deliveries
from campaigns.sending.tracking import TrackedHtml, tracking_apply

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


def _domain_ascii(domain: str) -> str:
    """A domain as it goes into a header or an SMTP command: lower case when ASCII, else its IDNA A-labels
    (the stdlib codec, IDNA 2003: it lower-cases and maps as nameprep says). UnicodeError (a ValueError) for a
    domain IDNA cannot encode."""
    domain = domain.strip().rstrip(".")
    return domain.lower() if domain.isascii() else domain.encode("idna").decode("ascii")


def message_id_domain() -> str:
    """The domain our Message-IDs name (RFC 5322 section 3.6.4): MESSAGE_ID_DOMAIN when set, else the domain of
    DEFAULT_FROM_EMAIL, the domain we send from. Production refuses a reserved one (hipaamail/settings/production)."""
    domain = settings.HIPAAMAIL_MESSAGE_ID_DOMAIN or parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2]
    if not domain.strip():
        raise ImproperlyConfigured("DEFAULT_FROM_EMAIL has no domain for Message-IDs: set MESSAGE_ID_DOMAIN.")
    return _domain_ascii(domain)


@lru_cache(maxsize=8)
def _installation_tag(key: str) -> str:
    return hmac.new(key.encode("utf-8"), b"hipaamail.message-id.installation", hashlib.sha256).hexdigest()[:16]


def message_id_parts() -> tuple[str, str]:
    """What goes before and after the delivery id in its Message-ID: `<delivery-42.3f9c0a17d2e84b65@domain>`
    (the sender computes it in SQL from these parts; the bounce reader takes it apart with them).

    The tag after the id tells installations apart: two of them sending from one domain (production and staging,
    two clinics on one provider) both have a delivery 42. It is derived (HMAC, 64 bits) from IDENTIFIER_HASH_KEY,
    which every installation has of its own and never rotates (consent.crypto), so a delivery's Message-ID never
    changes: a message sent again after a crash has the same one (DESIGN, "Recovery"), and a bounce for a message
    sent years ago still finds its delivery. Not SECRET_KEY, which is rotated. The tag reveals nothing of the key."""
    return "<delivery-", f".{_installation_tag(settings.IDENTIFIER_HASH_KEY)}@{message_id_domain()}>"


def message_id_for(delivery_id: int) -> str:
    before, after = message_id_parts()
    return f"{before}{delivery_id}{after}"


def message_id_for_test() -> str:
    """A test send's Message-ID (it has no delivery): random, under the same domain and installation tag, and not
    one the bounce reader takes for a delivery's."""
    return f"<test-{secrets.token_hex(12)}.{_installation_tag(settings.IDENTIFIER_HASH_KEY)}@{message_id_domain()}>"


def message_id_for_preview() -> str:
    """The Message-ID a preview shows (never sent)."""
    return f"<preview@{message_id_domain()}>"


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


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def _qp(text: str) -> bytes:
    """Quoted-printable body with CRLF line endings and soft breaks at 76 characters."""
    data = _crlf(text).encode("utf-8")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def _substituted(text: str, pairs: list[tuple[str, str]]) -> str:
    for placeholder, value in pairs:
        text = text.replace(placeholder, value)
    return text


class _QuotedPrintableBody:
    """A body template's quoted-printable encoding, made once per render for every line no recipient changes.

    Quoted-printable encodes each line on its own (soft breaks and trailing white space are decided within the
    line), so the encoded lines of the template joined with the encoded lines that carry a per-recipient
    placeholder, once substituted, are the same bytes as `_qp` of the whole substituted body, provided no value
    brings a line break (none does: a merge value is made one line, the links are ours;
    campaigns/tests/sending/test_message_encoding.py proves the equality). A message then encodes its one or two
    changing lines instead of all of its 5 KB twice over: the sender's largest cost per message after the socket
    (bench)."""

    def __init__(self, template: str, placeholders: list[str]):
        lines = _crlf(template).split("\r\n")
        last = lines.pop()  # what follows the last line break: "" when the template ends with one
        lines = [line + "\r\n" for line in lines] + ([last] if last else [])
        self.segments: list[bytes | str] = []  # encoded runs of unchanging lines, and the lines that change
        static: list[str] = []
        for line in lines or [""]:
            if any(placeholder in line for placeholder in placeholders):
                if static:
                    self.segments.append(_qp("".join(static)))
                    static = []
                self.segments.append(line)
            else:
                static.append(line)
        if static:
            self.segments.append(_qp("".join(static)))

    def encode(self, pairs: list[tuple[str, str]]) -> bytes:
        """The body with `pairs` (placeholder, value) substituted in order, quoted-printable."""
        encoded = []
        for segment in self.segments:
            if isinstance(segment, bytes):
                encoded.append(segment)
            elif line := _substituted(segment, pairs):  # only an unfinished last line can come out empty
                encoded.append(_qp(line))
        return b"".join(encoded) or b"\r\n"


def _envelope_address(address: str) -> str:
    """The address as it goes into RCPT TO and the To header: the domain in IDNA when it is not ASCII, the local
    part as it is (UTF-8 when it is not ASCII: RFC 6531/6532, the transport then asks for SMTPUTF8)."""
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        domain = _domain_ascii(domain)
    return f"{local}@{domain}"


# RFC 5322 dot-atom, with RFC 6532's UTF-8 characters allowed in it; a quoted-string local part as it is.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(\.{_ATEXT})*")
_QUOTED = re.compile(r'"([^"\\\r\n]|\\[^\r\n])*"')


def _to_header(address: str) -> str:
    """The To header's value: the bare address, the same as RCPT TO (the domain in IDNA). Never an RFC 2047
    encoded word, which RFC 2047 section 5 forbids in an address: a receiver cannot read one. An internationalised
    local part stays UTF-8 (RFC 6532); one that is not a dot-atom or a quoted-string is quoted."""
    if "\r" in address or "\n" in address:
        raise ValueError("A line break in a recipient address.")
    envelope = _envelope_address(address)
    if envelope.isascii() and not (_ADDRESS_UNSAFE & set(envelope)):
        return envelope
    local, _, domain = envelope.rpartition("@")
    if not (_DOT_ATOM.fullmatch(local) or _QUOTED.fullmatch(local)):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{local}@{domain}"


# How many of a sending batch's recipients are read at once when the sender does not pass their values.
_VALUES_PREFETCH = 1000


@dataclass(frozen=True)
class _Variant:
    """A render's text and HTML in one language of the footer, with their quoted-printable encodings."""

    text_template: str
    html_template: str
    tracking: TrackedHtml
    text_body: _QuotedPrintableBody
    html_body: _QuotedPrintableBody


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
        # Once per render, not per message: the domain is parsed from a setting and IDNA-encoded (bench: 11 %).
        self._message_id_parts = message_id_parts()
        self._rendered = rendered
        self._content = content
        # The footer (why they receive it, how to stop it, who sends it) in each recipient's own language
        # (consent.models.Language; issue 17): the variant of the organisation's default language now, another
        # the first time a recipient reads it. The marketer's content is as written.
        self._variants: dict[str, _Variant] = {}
        default = self._variant(settings.LANGUAGE_CODE.split("-")[0])
        self._variants[""] = default
        # The default variant's parts, as the preview and the tests read them.
        self.text_template, self.html_template, self.tracking = default.text_template, default.html_template, default.tracking
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

    def _variant(self, language: str) -> "_Variant":
        """The message's text and HTML with the footer in `language` (the organisation's default for one it has no
        translation for), made once per render and language. The one place the final HTML is produced: opt-in open
        and click tracking (campaigns.sending.tracking; unchanged unless the purpose turns it on) rewrites links
        here, with a placeholder of its own for the recipient's token, substituted in `assemble` like the others."""
        known = {code for code, _ in settings.LANGUAGES}
        language = language if language in known else settings.LANGUAGE_CODE.split("-")[0]
        variant = self._variants.get(language)
        if variant is not None:
            return variant
        with translation.override(language):
            context = {
                "content_html": mark_safe(self._rendered.html),  # sanitised by campaigns.content.html_sanitise
                "content_text": self._rendered.text,
                "organisation": settings.HIPAAMAIL_ORGANISATION_NAME,
                "postal_address": settings.HIPAAMAIL_POSTAL_ADDRESS,  # R-CANSPAM-ADDRESS
                "unsubscribe_url": self.placeholder,
                # The purpose as the patient reads it in the portal: its name in their language, as staff wrote it.
                "purpose_name": self._content.purpose.shown_name,
                "subject": self._content.subject,  # the HTML document's <title>, escaped by the template
                "footer_language": language,
            }
            text_template = render_to_string("campaigns/email/marketing.txt", context)
            document = render_to_string("campaigns/email/marketing.html", context)
        tracking = tracking_apply(document, campaign=self.campaign, keep=[self.placeholder, *self.fields.values()])
        changing = [self.placeholder, *self.fields.values()]
        if tracking.placeholder is not None:
            changing.append(tracking.placeholder)
        variant = _Variant(
            text_template=text_template,
            html_template=tracking.html,
            tracking=tracking,
            text_body=_QuotedPrintableBody(text_template, changing),
            html_body=_QuotedPrintableBody(tracking.html, changing),
        )
        self._variants[language] = variant
        return variant

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
            # RFC 5322 section 3.3 with a numeric zone: "GMT" is the obsolete form (section 4.3), and -0000 (what
            # formatdate gives for UTC) says the sender's zone is unknown. formatdate, not strftime: day and
            # month names in English whatever the locale.
            self._date_second, self._date = now, formatdate(now, usegmt=True).removesuffix("GMT") + "+0000"
        return self._date

    def assemble(
        self, *, delivery_id: int, to_address: str, merge_values: dict[str, str] | None = None,
        message_id: str | None = None, language: str = "",
    ) -> AssembledMessage:
        """One recipient's message. `merge_values` (the synthetic patient of a preview or test send) replaces
        reading the delivery's patient; `message_id` replaces the delivery's (a test send has no delivery);
        `language` is the recipient's (Patient.language), for the footer ("": the organisation's default)."""
        variant = self._variants.get(language) or self._variant(language)
        unsubscribe_url = self._unsubscribe_url.replace(self.placeholder, self._signer.sign(str(delivery_id)))
        if message_id is None:
            before, after = self._message_id_parts
            message_id = f"{before}{delivery_id}{after}"
        text_pairs: list[tuple[str, str]] = []
        html_pairs: list[tuple[str, str]] = []
        if self.fields:
            values = merge_values if merge_values is not None else self._recipient_values(delivery_id)
            for name, placeholder in self.fields.items():
                value = " ".join(str(values.get(name, "")).split())  # one line: no CR/LF from a value
                text_pairs.append((placeholder, value))
                html_pairs.append((placeholder, html.escape(value)))
        text_pairs.append((self.placeholder, unsubscribe_url))
        html_pairs.append((self.placeholder, html.escape(unsubscribe_url)))
        if variant.tracking.placeholder is not None:
            html_pairs.append((variant.tracking.placeholder, variant.tracking.token_for(delivery_id)))
        text = _substituted(variant.text_template, text_pairs)
        html_text = _substituted(variant.html_template, html_pairs)
        headers = {
            "To": _to_header(to_address),
            "Date": self._date_header(),
            "Message-ID": message_id,
            # R-RFC8058: one-click unsubscribe, a POST to this URL with no cookie and no login.
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        # ASCII but for an internationalised local part in To (RFC 6532: UTF-8, sent with SMTPUTF8).
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("utf-8")
        raw = b"".join(
            (
                self._fixed_headers,
                head,
                self._content_type,
                b"\r\n",
                self._text_head,
                variant.text_body.encode(text_pairs),
                self._html_head,
                variant.html_body.encode(html_pairs),
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
