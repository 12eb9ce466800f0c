"""The ways a campaign message leaves the process. Only `campaigns.sending.dispatch.delivery_dispatch_batch` uses them.

- `SmtpTransport` ("smtp"): smtplib over one connection per batch, reconnecting every
  `HIPAAMAIL_SMTP_RECONNECT_EVERY` messages, sending the assembled bytes as they are. STARTTLS is required
  (R-SEC-TLS) unless the relay is on loopback and `HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK` is set (the demo, the
  tests and the benchmark's local sink); implicit TLS when `EMAIL_USE_SSL`. When the relay advertises PIPELINING
  (RFC 2920), MAIL FROM, RCPT TO and DATA go in one write and their three replies are read together: two round
  trips a message instead of four. Errors are raised as smtplib's sendmail raises them, one message at a time.
- `DjangoTransport` ("django", the default): hands each message, as a Django `EmailMultiAlternatives` whose
  serialisation is the assembled bytes, to Django's configured backend: locmem keeps `mail.outbox` for tests,
  filebased keeps the demo's var/outbox, Django's SMTP backend works too (it sends the same bytes).

`HIPAAMAIL_TRANSPORT` chooses. Errors are smtplib's own (SMTPException, OSError): the sender classifies them.

Both sign each message with DKIM when a key is configured (campaigns.sending.dkim): the signature covers the one-click
unsubscribe headers (R-RFC8058). The key is loaded when the transport is built, before anything is claimed, so a
bad key stops the batch with ImproperlyConfigured rather than sending unsigned mail.
"""
import contextlib
import dataclasses
import ipaddress
import re
import smtplib
import ssl
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, get_connection

from campaigns.sending.dkim import dkim_signer
from campaigns.sending.messages import AssembledMessage
from campaigns.sending.tls import smtp_tls_context
from observability import metrics

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


class TlsUnavailable(smtplib.SMTPException):
    """The relay did not offer STARTTLS: nothing is sent in clear (R-SEC-TLS); the batch stays queued."""


class WindowClosed(Exception):
    """The check-to-send window closed while a message was being handed over (the server had not answered by the
    deadline). The connection is dropped; the message may have reached the server, so its delivery is queued
    again marked possible_duplicate and re-checked before any second attempt (ADR 0010). Not an SMTPException:
    the sender must never mistake it for a refusal or a server that is away."""


@contextlib.contextmanager
def _deadline(sock, deadline: float | None):
    """Bound every read and write on `sock` by the monotonic instant `deadline`; raise WindowClosed if it
    passes (before anything is written, or while waiting for the server)."""
    if deadline is None or sock is None:
        yield
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise WindowClosed("the window closed before the message was started")
    previous = sock.gettimeout()
    sock.settimeout(remaining)
    try:
        yield
    except (smtplib.SMTPServerDisconnected, OSError) as error:
        if time.monotonic() >= deadline - 0.001:
            raise WindowClosed("the server did not answer within the window") from error
        raise
    finally:
        try:
            sock.settimeout(previous)
        except OSError:
            pass


_TLS_CONTEXT: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """Certificate-verifying TLS, built once per process (loading the CA store costs milliseconds)."""
    global _TLS_CONTEXT
    if _TLS_CONTEXT is None:
        _TLS_CONTEXT = smtp_tls_context()  # the system's CAs and EMAIL_CA_FILE's
    return _TLS_CONTEXT


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _RawMime:
    """What Django's backends serialise: the assembled bytes, untouched."""

    def __init__(self, raw: bytes):
        self.raw = raw

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n") -> bytes:
        return self.raw if linesep == "\r\n" else self.raw.replace(b"\r\n", linesep.encode("ascii"))

    def as_string(self, unixfrom: bool = False, linesep: str = "\n") -> str:
        return self.as_bytes(linesep=linesep).decode("utf-8")

    def get_charset(self):
        return None

    def __bytes__(self) -> bytes:
        return self.raw


class AssembledEmail(EmailMultiAlternatives):
    """An `EmailMultiAlternatives` carrying an assembled message: body, alternatives and headers for readers
    (tests, the admin of an outbox), and the assembled bytes as its serialisation."""

    def __init__(self, assembled: AssembledMessage):
        super().__init__(
            subject=assembled.subject,
            body=assembled.text,
            from_email=assembled.from_header,
            to=[assembled.to_address],
            headers={name: value for name, value in assembled.headers.items() if name not in ("To", "Date")},
        )
        self.attach_alternative(assembled.html, "text/html")
        self.raw = assembled.raw

    def message(self, *args, **kwargs):
        return _RawMime(self.raw)


class DjangoTransport:
    name = "django"

    def __init__(self):
        self._connection = None
        self._signer = dkim_signer()

    def open(self) -> None:
        """Connect now (idempotent), so that connecting is not counted in a check-to-send window."""
        if self._connection is None:
            self._connection = get_connection(fail_silently=False)
            self._connection.open()

    def send(self, message: AssembledMessage, *, deadline: float | None = None) -> None:
        """Hand the message to Django's backend; with Django's SMTP backend, every read and write is bounded
        by `deadline` (a time.monotonic() instant): WindowClosed when it passes (the connection is closed)."""
        if self._signer is not None:
            message = dataclasses.replace(message, raw=self._signer.sign(message.raw))
        self.open()
        sock = getattr(getattr(self._connection, "connection", None), "sock", None)  # Django's SMTP backend
        try:
            with _deadline(sock, deadline):
                self._connection.send_messages([AssembledEmail(message)])
        except WindowClosed:
            with contextlib.suppress(Exception):  # the connection is in an unknown state: just let it go
                self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()


_LEADING_DOT = re.compile(rb"(?m)^\.")
# An ASCII dot-atom address (RFC 5321 Mailbox with a Dot-string local part and a domain of letters, digits,
# hyphens and dots): what nearly every recipient is. smtplib.quoteaddr parses each address with email.utils
# (bench: 15 % of the sender's time for two addresses a message) only to return it in angle brackets; for such an
# address the result is the same (campaigns/tests/sending/test_message_encoding.py), so the parse is skipped.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(\.{_ATOM})*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


def _quoted(address: str) -> str:
    """`smtplib.quoteaddr(address)`, without its parse for a plain address."""
    return f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)


def _reset_or_close(smtp: smtplib.SMTP, *, closing: bool) -> None:
    """After a refusal: RSET for the next message, as sendmail does; a 421 means the server is leaving."""
    if closing:
        smtp.close()
        return
    try:
        smtp.rset()
    except smtplib.SMTPServerDisconnected:
        pass


def _pipelined_sendmail(smtp: smtplib.SMTP, from_address: str, to_address: str, raw: bytes) -> None:
    """`smtp.sendmail(from_address, [to_address], raw)` with MAIL, RCPT and DATA pipelined (RFC 2920).

    Raises what sendmail raises, so the sender classifies the outcome the same way: SMTPSenderRefused,
    SMTPRecipientsRefused (this one message refused: the connection stays usable after a RSET),
    SMTPDataError, SMTPServerDisconnected. A 421 anywhere closes the connection, as sendmail does."""
    utf8 = not (from_address.isascii() and to_address.isascii())
    if utf8 and not smtp.has_extn("smtputf8"):
        # sendmail would fail to encode the command; refuse this one recipient the way a server would.
        raise smtplib.SMTPRecipientsRefused({to_address: (553, b"5.6.7 address needs SMTPUTF8")})
    encoding = "utf-8" if utf8 else "ascii"
    smtp.send(
        f"MAIL FROM:{_quoted(from_address)}{' SMTPUTF8' if utf8 else ''}\r\n"
        f"RCPT TO:{_quoted(to_address)}\r\nDATA\r\n".encode(encoding)
    )
    replies = []

    def failed(error: smtplib.SMTPException, code: int):
        # Read what is still owed for the group, so the connection stays in step, then reset the transaction.
        while len(replies) < 3:
            replies.append(smtp.getreply())
        if replies[2][0] == 354:  # the server took DATA after all: end an empty message
            smtp.send(b".\r\n")
            smtp.getreply()
        _reset_or_close(smtp, closing=code == 421 or any(reply_code == 421 for reply_code, _ in replies))
        return error

    replies.append(smtp.getreply())
    code, reply = replies[0]
    if code != 250:
        raise failed(smtplib.SMTPSenderRefused(code, reply, from_address), code)
    replies.append(smtp.getreply())
    code, reply = replies[1]
    if code not in (250, 251):
        raise failed(smtplib.SMTPRecipientsRefused({to_address: (code, reply)}), code)
    replies.append(smtp.getreply())
    code, reply = replies[2]
    if code != 354:
        raise failed(smtplib.SMTPDataError(code, reply), code)
    # Dot-stuffing (RFC 5321 4.5.2); the search first, since most messages have no line that starts with a dot
    # and the substitution would copy every message's bytes for nothing. A message starts with a header.
    data = _LEADING_DOT.sub(b"..", raw) if b"\n." in raw else raw
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    smtp.send(data + b".\r\n")
    code, reply = smtp.getreply()
    if code != 250:
        _reset_or_close(smtp, closing=code == 421)
        raise smtplib.SMTPDataError(code, reply)


class SmtpTransport:
    name = "smtp"

    def __init__(self):
        self.host = settings.EMAIL_HOST
        self.port = settings.EMAIL_PORT
        self.use_ssl = settings.EMAIL_USE_SSL
        self.use_tls = settings.EMAIL_USE_TLS
        self.timeout = settings.EMAIL_TIMEOUT
        self.reconnect_every = settings.HIPAAMAIL_SMTP_RECONNECT_EVERY
        plaintext_allowed = settings.HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK and _is_loopback(self.host)
        if not (self.use_ssl or self.use_tls or plaintext_allowed):
            raise ImproperlyConfigured(
                "Mail must leave over TLS (HIPAA Security Rule, 45 CFR 164.312(e)(1): transmission security): set EMAIL_USE_TLS or EMAIL_USE_SSL; plaintext is "
                "allowed only to a loopback relay with HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK."
            )
        self._signer = dkim_signer()
        self._smtp: smtplib.SMTP | None = None
        self._pipelining = False
        self._sent_on_connection = 0
        self.connections_opened = 0

    def _open(self) -> None:
        context = _tls_context() if (self.use_ssl or self.use_tls) else None
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.use_tls:
                if not smtp.has_extn("starttls"):
                    raise TlsUnavailable("the relay does not offer STARTTLS")
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.EMAIL_HOST_USER:
                smtp.login(settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD)
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        self._pipelining = settings.HIPAAMAIL_SMTP_PIPELINING and smtp.has_extn("pipelining")
        self._sent_on_connection = 0
        self.connections_opened += 1

    def open(self) -> None:
        """Connect now, or reconnect when the session has carried `reconnect_every` messages (idempotent), so
        that the greeting, STARTTLS and login are not counted in a check-to-send window (ADR 0010)."""
        if self._smtp is not None and self.reconnect_every and self._sent_on_connection >= self.reconnect_every:
            self.close()
        if self._smtp is None:
            self._open()

    def send(self, message: AssembledMessage, *, deadline: float | None = None) -> None:
        """Send one message; every read and write is bounded by `deadline` (a time.monotonic() instant), and
        WindowClosed is raised when it passes (the connection is dropped)."""
        self.open()
        raw = self._signer.sign(message.raw) if self._signer is not None else message.raw
        try:
            with _deadline(self._smtp.sock, deadline):
                # One recipient: a refusal raises SMTPRecipientsRefused, a refused DATA SMTPDataError.
                if self._pipelining:
                    _pipelined_sendmail(self._smtp, message.from_address, message.to_address, raw)
                else:
                    self._smtp.sendmail(message.from_address, [message.to_address], raw)
        except WindowClosed:
            self._drop()
            raise
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            if not isinstance(error, (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)):
                self._drop()
            raise
        self._sent_on_connection += 1

    def _drop(self) -> None:
        if self._smtp is not None:
            smtp, self._smtp = self._smtp, None
            try:
                smtp.close()
            except OSError:
                pass

    def close(self) -> None:
        if self._smtp is None:
            return
        smtp, self._smtp = self._smtp, None
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def transport_for_settings():
    """The transport `HIPAAMAIL_TRANSPORT` names; refuses a configuration that would send in clear."""
    name = settings.HIPAAMAIL_TRANSPORT
    if name == "smtp":
        return SmtpTransport()
    if name == "django":
        return DjangoTransport()
    raise ImproperlyConfigured(f"HIPAAMAIL_TRANSPORT must be 'smtp' or 'django', not {name!r}.")


class RateLimiter:
    """At most `HIPAAMAIL_RATE_LIMIT` messages per second across every worker: a counter per second of the Redis
    server's clock (INCRBY, expiring), shared by all processes; without Redis, per process. 0: unlimited.

    The sender takes its tokens before it claims a batch (`take`), so it never sleeps inside a sending
    transaction or while holding authorization locks (ADR 0010), and claims only as many deliveries as it was
    granted; what it could not use it gives back (`give_back`)."""

    def __init__(self, *, limit: int, redis_url: str = "", clock=None, sleep=None):
        self.limit = limit
        self.redis_url = redis_url
        self._sleep = sleep or time.sleep
        self._redis = None
        if limit and redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url)
        # Shared counters count in the Redis server's seconds, not each worker's: workers whose clocks disagree
        # would otherwise count in different seconds and together exceed the limit (docs/reliability.md, "Time").
        self._clock = clock or (self._redis_time if self._redis is not None else time.time)
        self._local_second = -1
        self._local_count = 0

    def _redis_time(self) -> float:
        seconds, microseconds = self._redis.time()
        return seconds + microseconds / 1_000_000

    def _key(self, second: int) -> str:
        return f"hipaamail:send-rate:{second}"

    def _add(self, second: int, n: int) -> int:
        """Add n to this second's count; returns the count after."""
        if self._redis is not None:
            pipe = self._redis.pipeline()
            pipe.incrby(self._key(second), n)
            pipe.expire(self._key(second), 5)
            return pipe.execute()[0]
        if second != self._local_second:
            self._local_second, self._local_count = second, 0
        self._local_count += n
        return self._local_count

    def _remove(self, second: int, n: int) -> None:
        if n <= 0:
            return
        if self._redis is not None:
            self._redis.decrby(self._key(second), n)
        elif second == self._local_second:
            self._local_count -= n

    def take(self, wanted: int) -> tuple[int, int]:
        """Wait until at least one message may go, then take up to `wanted` of this second's allowance.
        Returns (granted, second); `wanted` itself, at once, when there is no limit."""
        if not self.limit:
            return wanted, 0
        while True:
            now = self._clock()
            second = int(now)
            after = self._add(second, wanted)
            granted = min(wanted, self.limit - (after - wanted))
            if granted > 0:
                self._remove(second, wanted - granted)
                return granted, second
            self._remove(second, wanted)
            metrics.send_rate_limit_waited()
            self._sleep(max(0.0, second + 1 - now))

    def give_back(self, second: int, n: int) -> None:
        """Return tokens taken in `second` and not used (the claim found fewer deliveries); a later second's
        allowance is its own, so tokens of a past second are simply dropped."""
        if self.limit and n > 0 and int(self._clock()) == second:
            self._remove(second, n)


_limiter: RateLimiter | None = None


def rate_limiter() -> RateLimiter:
    """The process's limiter for the current settings (reused: one Redis connection pool per process)."""
    global _limiter
    limit, url = settings.HIPAAMAIL_RATE_LIMIT, settings.HIPAAMAIL_RATE_LIMIT_REDIS_URL
    if _limiter is None or (_limiter.limit, _limiter.redis_url) != (limit, url):
        _limiter = RateLimiter(limit=limit, redis_url=url)
    return _limiter
