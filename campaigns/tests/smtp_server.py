"""A real SMTP sink for tests that must see what actually leaves the process (aiosmtpd on 127.0.0.1).

    with smtp_sink(delay=0.003) as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
        ...
        sink.records  # one ReceivedMessage per message, in arrival order

Each record carries the wall-clock instant (time.time()) at which the server took the DATA command, so a test
can compare it with instants recorded in other threads or processes on the same machine. The optional delay
is slept inside DATA, before the server answers 250, so the sender really waits on the mail server the way it
would on a distant one: a race with the send then has a window wide enough to land in.

By default the delay blocks the server's event loop, so connections are served one at a time. With
`concurrent=True` it is awaited instead: several senders (worker processes) are then in DATA at once, each
waiting on its own 250, as they would be against a real relay (the history checker, campaigns/tests/test_history.py).
"""
import asyncio
import contextlib
import dataclasses
import email
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedMessage:
    received_at: float  # time.time() when handle_DATA ran
    mail_from: str
    recipients: tuple[str, ...]  # the envelope's RCPT TO, lower-cased
    message_id: str
    list_unsubscribe: str
    list_unsubscribe_post: str
    subject: str
    raw: bytes
    peer: tuple  # the client's (host, port): one value per SMTP connection
    answered_at: float | None = None  # time.time() just before the 250 went back (None until then)


class RecordingHandler:
    """An aiosmtpd handler that records each message; thread-safe for readers in other threads."""

    def __init__(self, delay: float = 0.0, *, concurrent: bool = False, keep_raw: bool = True):
        self.delay = delay
        self.concurrent = concurrent
        # Off for runs of tens of thousands of messages (the multi-host test): each record then keeps b"" for raw
        # and the headers are read from the message's head only.
        self.keep_raw = keep_raw
        # Called with each record as soon as it is recorded, before the delay and the 250, in the server's event
        # loop thread (so it must not touch the database): a test's hook to act while a message is in flight.
        self.on_data = None
        self._lock = threading.Lock()
        self._records: list[ReceivedMessage] = []

    async def handle_DATA(self, server, session, envelope):
        received_at = time.time()
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        parsed = email.message_from_bytes(raw if self.keep_raw else raw.split(b"\r\n\r\n", 1)[0])
        record = ReceivedMessage(
            received_at=received_at,
            mail_from=envelope.mail_from or "",
            recipients=tuple(address.lower() for address in envelope.rcpt_tos),
            message_id=str(parsed.get("Message-ID", "")).strip(),
            list_unsubscribe=str(parsed.get("List-Unsubscribe", "")).strip(),
            list_unsubscribe_post=str(parsed.get("List-Unsubscribe-Post", "")).strip(),
            subject=str(parsed.get("Subject", "")),
            raw=raw if self.keep_raw else b"",
            peer=tuple(session.peer),
        )
        with self._lock:
            self._records.append(record)
        if self.on_data is not None:
            self.on_data(record)
        if self.delay and self.concurrent:
            await asyncio.sleep(self.delay)  # other connections are served meanwhile
        elif self.delay:
            # A blocking sleep on purpose: it holds the sender exactly like a slow server would, and the
            # controller's event loop serves one connection at a time anyway (Django's backend uses one).
            time.sleep(self.delay)
        with self._lock:
            for index in range(len(self._records) - 1, -1, -1):  # the newest first: it is almost always last
                if self._records[index] is record:
                    self._records[index] = dataclasses.replace(record, answered_at=time.time())
                    break
        return "250 Message accepted for delivery"

    @property
    def records(self) -> list[ReceivedMessage]:
        """A snapshot copy, safe to iterate while the server keeps receiving."""
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


class SmtpSink:
    def __init__(self, controller: Controller, handler: RecordingHandler):
        self.controller = controller
        self.handler = handler
        self.host = controller.hostname
        self.port = controller.port

    @property
    def records(self) -> list[ReceivedMessage]:
        return self.handler.records

    def recipients(self) -> list[str]:
        return [address for record in self.records for address in record.recipients]

    def email_settings(self) -> dict[str, object]:
        """The Django settings (or, as strings, the environment) that route mail to this sink."""
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": self.host,
            "EMAIL_PORT": self.port,
            "EMAIL_USE_TLS": False,
            "EMAIL_USE_SSL": False,
        }


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def smtp_sink(
    *, delay: float = 0.0, host: str = "127.0.0.1", concurrent: bool = False, keep_raw: bool = True
) -> Iterator[SmtpSink]:
    """Run an SMTP server on a free port of `host` for the duration of the block (`concurrent`, `keep_raw`: see
    RecordingHandler)."""
    handler = RecordingHandler(delay=delay, concurrent=concurrent, keep_raw=keep_raw)
    # server_hostname: otherwise the banner needs the machine's FQDN, a lookup that can hang offline.
    controller = Controller(
        handler, hostname=host, port=free_port(host), server_hostname="sink.test", ready_timeout=10
    )
    controller.start()
    try:
        yield SmtpSink(controller, handler)
    finally:
        controller.stop()
