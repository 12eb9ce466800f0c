"""A Django email backend that DKIM-signs every message it sends, with the campaign key (campaigns.sending.dkim).

Campaign mail is signed by its transports. Everything else the product sends goes through Django's
`EMAIL_BACKEND`: a patient's sign-in code, invitations and signed copies (consent.notifications), the audit
chain-break alert (audit.services), allauth's staff mail (verification, password reset). Unsigned, those land in
spam, and a sign-in code is the message a phisher most wants to imitate. Production sets
`EMAIL_BACKEND = "campaigns.sending.backend.DkimEmailBackend"`; it hands each message to the backend that
`HIPAAMAIL_DKIM_WRAPPED_EMAIL_BACKEND` names (Django's SMTP backend by default), signed when
`campaigns.sending.dkim.dkim_signer()` returns a signer, and as it is when no key is configured.

Decision: one wrapper for every backend, signing a frozen serialisation, rather than a subclass per backend.
Each of Django's backends (SMTP, locmem, filebased, console) gets its bytes from `email_message.message()`, and
the SMTP backend puts `message().as_bytes(linesep="\\r\\n")` on the wire as it is. So this backend serialises each
message once, exactly that way, signs those bytes, and passes on a shallow copy of the message whose `message()`
returns the signed bytes, unchanged, for any `linesep="\\r\\n"` serialisation (and with `\\n` line ends for the
file and console backends, as Django's own messages give them). The bytes signed are the bytes sent, and freezing
them matters: Django's `message()` makes a new Date and Message-ID at each call, so a signature over one call's
output would not match another's. One code path signs for every backend, so the tests' locmem outbox and the
demo's outbox folder hold what the SMTP relay would receive. A subclass of the SMTP backend overriding `_send`
would sign the same bytes, but only for SMTP, and by copying a private method of Django's that changes between
releases. Backends that never serialise (an ESP's HTTP API through anymail) send the message's parts, not its
bytes, so no signature of ours would reach the provider: such a provider signs with its own DKIM key.

- No key configured: the messages go to the wrapped backend untouched, the very objects passed in.
- A key configured but unusable: ImproperlyConfigured before anything is handed over, even with
  `fail_silently` (as the campaign transports refuse to send a batch unsigned).
- A message already signed by this key's domain and selector is passed on as it is: the "django" campaign
  transport (and a campaign's test send) signs its own assembled bytes before they reach `EMAIL_BACKEND`, and a
  second signature would add nothing but cost.
- The caller's message is never modified: it can be sent again, and is then serialised and signed afresh.
"""
import copy
import re
from email import message_from_bytes
from email.message import Message

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSmtpEmailBackend
from django.utils.functional import cached_property

from campaigns.sending.dkim import DkimSigner, dkim_signer
from campaigns.sending.tls import smtp_tls_context

DEFAULT_WRAPPED_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


class SmtpEmailBackend(DjangoSmtpEmailBackend):
    """Django's SMTP backend, verifying the relay against the CAs the campaign transport trusts (the system's and
    EMAIL_CA_FILE's, campaigns.sending.tls) rather than the system's alone. Production's default wrapped backend."""

    @cached_property
    def ssl_context(self):
        context = smtp_tls_context()
        if self.ssl_certfile or self.ssl_keyfile:  # a client certificate, as Django's own backend loads it
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

_SIGNATURE_PREFIX = b"dkim-signature:"
_END_OF_FIELD = re.compile(rb"\r\n(?![ \t])")  # the end of a header field: a line break not followed by folding
_WHITESPACE = re.compile(rb"\s+")


def _wrapped_backend_path() -> str:
    path = getattr(settings, "HIPAAMAIL_DKIM_WRAPPED_EMAIL_BACKEND", "") or DEFAULT_WRAPPED_BACKEND
    if path == f"{__name__}.{DkimEmailBackend.__name__}":
        raise ImproperlyConfigured("HIPAAMAIL_DKIM_WRAPPED_EMAIL_BACKEND must name another backend, not this one.")
    return path


def _signed_by(raw: bytes, signer: DkimSigner) -> bool:
    """Whether the message's first header is a DKIM-Signature of `signer`'s domain and selector."""
    if raw[: len(_SIGNATURE_PREFIX)].lower() != _SIGNATURE_PREFIX:
        return False
    end = _END_OF_FIELD.search(raw)
    value = _WHITESPACE.sub(b"", raw[len(_SIGNATURE_PREFIX) : end.start() if end else len(raw)])
    tags = dict(tag.split(b"=", 1) for tag in value.split(b";") if b"=" in tag)
    return tags.get(b"d", b"").lower() == signer.domain and tags.get(b"s") == signer.selector


class SignedMessage:
    """What `message()` returns for a signed message: the signed bytes (CRLF) for every serialisation, and the
    parsed message for anyone who reads headers from it (a test, the admin of an outbox)."""

    def __init__(self, raw: bytes, charset=None):
        self.raw = raw
        self._charset = charset
        self._parsed = None

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n") -> bytes:
        return self.raw if linesep == "\r\n" else self.raw.replace(b"\r\n", linesep.encode("ascii"))

    def as_string(self, unixfrom: bool = False, linesep: str = "\n") -> str:
        return self.as_bytes(linesep=linesep).decode(self._charset.get_output_charset() if self._charset else "utf-8")

    def __bytes__(self) -> bytes:
        return self.raw

    def get_charset(self):
        """The original message's charset: the console and file backends decode the bytes with it."""
        return self._charset

    def _message(self) -> Message:
        if self._parsed is None:
            self._parsed = message_from_bytes(self.raw)
        return self._parsed

    def __getitem__(self, name: str):
        return self._message()[name]

    def __contains__(self, name: str) -> bool:
        return name in self._message()

    def __getattr__(self, name: str):
        # Reading only (get, get_all, items, walk, get_payload ...): the parsed copy of the signed bytes.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._message(), name)


def _frozen_message(signed: SignedMessage):
    def message(*args, **kwargs) -> SignedMessage:
        return signed

    return message


def signed_email(email_message, signer: DkimSigner):
    """A shallow copy of `email_message` whose `message()` is its serialisation, signed; or `email_message`
    itself when it has no recipient (no backend sends it) or is already signed by this key."""
    if not email_message.recipients():
        return email_message
    mime = email_message.message()
    raw = mime.as_bytes(linesep="\r\n")
    if _signed_by(raw, signer):
        return email_message
    signed = copy.copy(email_message)
    # An instance attribute in place of the method: the copy serialises to these bytes, however many times a
    # backend asks (locmem calls message() to validate, then deep-copies the message into the outbox).
    signed.message = _frozen_message(SignedMessage(signer.sign(raw), charset=mime.get_charset()))
    return signed


class DkimEmailBackend(BaseEmailBackend):
    """Signs each message with the DKIM key when one is configured, then hands it to the wrapped backend."""

    def __init__(self, fail_silently: bool = False, **kwargs):
        super().__init__(fail_silently=fail_silently)
        self.wrapped = get_connection(_wrapped_backend_path(), fail_silently=fail_silently, **kwargs)

    def open(self):
        return self.wrapped.open()

    def close(self):
        return self.wrapped.close()

    def send_messages(self, email_messages):
        if not email_messages:
            return self.wrapped.send_messages(email_messages)
        signer = dkim_signer()  # None without a key; ImproperlyConfigured for a key that cannot be used
        if signer is not None:
            email_messages = [signed_email(email_message, signer) for email_message in email_messages]
        return self.wrapped.send_messages(email_messages)
