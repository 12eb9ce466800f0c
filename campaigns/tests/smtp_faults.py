"""A faulty SMTP server for the mail-server fault suite (campaigns/tests/test_smtp_faults.py): the recording sink of
campaigns.tests.smtp_server with the faults a real relay shows, each one an option.

    faults = SmtpFaults(session_limit=4)          # 421 and close at the MAIL FROM after 4 messages in a session
    faults = SmtpFaults(temporary_rate=0.1)       # 451 at the end of DATA for about 1 message in 10 (seeded)
    faults = SmtpFaults(refused={"a@x.test"})     # 550 at RCPT TO for these addresses
    faults = SmtpFaults(stall_at={3}, stall_seconds=3)  # the 3rd DATA stops being read half-way, for 3 s
    faults = SmtpFaults(drop_at={5})              # the 5th message is taken whole, then the connection is cut
    with faulty_smtp_sink(faults, delay=0.02) as sink:
        sink.records               # the messages the server took (accepted, or taken and then cut off: see below)
        sink.handler.refusals      # every refusal it answered, with its code

What counts as received (`records`, which the history checker reads as copies that may reach the patient):

- a message answered 250;
- a message dropped after DATA: the server had the whole message and its terminating dot when it cut the
  connection without answering. A real relay may deliver it, so it is a copy, and the sender cannot know.
- a message whose DATA stalled, if the server goes on reading it once the stall ends: the sender has given up
  at its check-to-send window and closed the connection, but the rest of the message and its dot may still be
  in the server's buffer, and then it is taken whole (seen in this suite); or aiosmtpd sees the end of the
  connection first and cancels the transaction, and there is no copy;
- not a message answered 421, 451 or 550 (the server said it did not take it).

Ordinals (`stall_at`, `drop_at`) count DATA commands across the whole server from 1, in arrival order, so a test
names exactly which hand-over fails. The 451s come from a random.Random(seed): the same seed, the same
sequence of decisions in arrival order.
"""
import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from campaigns.tests.smtp_server import RecordingHandler, SmtpSink, free_port


@dataclass
class SmtpFaults:
    session_limit: int = 0  # 421 and close at the MAIL FROM after this many accepted messages in one session; 0: none
    temporary_rate: float = 0.0  # probability of a 451 at the end of DATA
    seed: int = 0
    refused: frozenset[str] = frozenset()  # addresses answered 550 at RCPT TO
    stall_at: frozenset[int] = frozenset()  # DATA ordinals whose content stops being read after its headers
    stall_seconds: float = 0.0
    drop_at: frozenset[int] = frozenset()  # DATA ordinals taken whole, then the connection is cut unanswered


@dataclass(frozen=True)
class Refusal:
    code: int
    stage: str  # MAIL, RCPT, DATA
    recipient: str  # "" at MAIL
    message_id: str  # "" before DATA
    at: float  # time.time()


@dataclass
class _Counters:
    lock: threading.Lock = field(default_factory=threading.Lock)
    data_commands: int = 0
    sessions: int = 0
    stalled: list[tuple[int, str]] = field(default_factory=list)  # (ordinal, Message-ID) of each stalled DATA
    dropped: list[str] = field(default_factory=list)  # Message-IDs taken and then cut off


class FaultyHandler(RecordingHandler):
    """RecordingHandler with the faults of `SmtpFaults`; `refusals`, `counters` for the test to read."""

    def __init__(self, faults: SmtpFaults, *, delay: float = 0.0):
        # concurrent: a stall or a slow answer on one connection does not hold the others (several workers).
        super().__init__(delay=delay, concurrent=True)
        self.faults = faults
        self.counters = _Counters()
        self._random = random.Random(faults.seed)
        self._refusals: list[Refusal] = []

    @property
    def refusals(self) -> list[Refusal]:
        with self.counters.lock:
            return list(self._refusals)

    def _refuse(self, code: int, stage: str, recipient: str = "", message_id: str = "") -> None:
        with self.counters.lock:
            self._refusals.append(Refusal(code, stage, recipient, message_id, time.time()))

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        limit = self.faults.session_limit
        if limit and getattr(session, "accepted", 0) >= limit:
            # As Amazon SES ends a session that has carried its limit: 421, then the server closes the channel.
            self._refuse(421, "MAIL")
            server.loop.call_soon(_close, server)
            return "421 4.7.0 Too many messages in this session, closing channel"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.faults.refused:
            self._refuse(550, "RCPT", address.lower())
            return "550 5.1.1 Mailbox does not exist"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        ordinal = getattr(session, "data_ordinal", 0)
        if ordinal in self.faults.drop_at:
            # The whole message and its dot arrived; record it (a relay may deliver it), then cut the connection
            # before any answer: abort(), not close(), which would still send what is written next.
            record = self._record(session, envelope)
            with self.counters.lock:
                self.counters.dropped.append(record.message_id)
            server.transport.abort()
            return "250 never sent: the connection is gone"
        if self.faults.temporary_rate:
            with self.counters.lock:
                refuse = self._random.random() < self.faults.temporary_rate
            if refuse:
                message_id = _message_id(envelope)
                self._refuse(451, "DATA", ",".join(a.lower() for a in envelope.rcpt_tos), message_id)
                return "451 4.3.0 Local error in processing, try again later"
        answer = await super().handle_DATA(server, session, envelope)
        session.accepted = getattr(session, "accepted", 0) + 1
        return answer

    def _record(self, session, envelope):
        """Record a message the way RecordingHandler.handle_DATA does, without answering it."""
        from campaigns.tests.smtp_server import ReceivedMessage

        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        record = ReceivedMessage(
            received_at=time.time(),
            mail_from=envelope.mail_from or "",
            recipients=tuple(address.lower() for address in envelope.rcpt_tos),
            message_id=_message_id(envelope),
            list_unsubscribe="",
            list_unsubscribe_post="",
            subject="",
            raw=raw,
            peer=tuple(session.peer),
        )
        with self._lock:
            self._records.append(record)
        return record


def _message_id(envelope) -> str:
    raw = envelope.original_content or envelope.content or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    return _head_message_id(raw.split(b"\r\n\r\n", 1)[0])


def _head_message_id(head: bytes) -> str:
    import email

    return str(email.message_from_bytes(head).get("Message-ID", "")).strip()


def _close(server) -> None:
    if server.transport is not None:
        server.transport.close()


class _StallingReader:
    """A stream reader that, after the message's header lines, stops reading for `seconds`: the server stalls in
    the middle of DATA (the client's bytes sit unread in the socket's buffer, its answer never comes).
    `on_stall(message_id)` is called as the stall begins, with the Message-ID read from the headers so far."""

    def __init__(self, reader, seconds: float, on_stall):
        self._reader = reader
        self._seconds = seconds
        self._on_stall = on_stall
        self._stalled = False
        self._head: list[bytes] = []

    async def readuntil(self, separator=b"\n"):
        line = await self._reader.readuntil(separator)
        if not self._stalled:
            self._head.append(line)
        if not self._stalled and line == b"\r\n":  # the blank line after the headers: half-way through DATA
            self._stalled = True
            self._on_stall(_head_message_id(b"".join(self._head)))
            await asyncio.sleep(self._seconds)
        return line

    def __getattr__(self, name):
        return getattr(self._reader, name)


class FaultySMTP(SMTP):
    """aiosmtpd's SMTP, numbering DATA commands and stalling the ones SmtpFaults.stall_at names."""

    async def smtp_DATA(self, arg):
        handler: FaultyHandler = self.event_handler
        with handler.counters.lock:
            handler.counters.data_commands += 1
            ordinal = handler.counters.data_commands
        self.session.data_ordinal = ordinal
        if ordinal not in handler.faults.stall_at:
            return await super().smtp_DATA(arg)
        def on_stall(message_id: str) -> None:
            with handler.counters.lock:
                handler.counters.stalled.append((ordinal, message_id))

        reader, self._reader = self._reader, _StallingReader(self._reader, handler.faults.stall_seconds, on_stall)
        try:
            return await super().smtp_DATA(arg)
        finally:
            self._reader = reader


class _FaultyController(Controller):
    def factory(self):
        return FaultySMTP(self.handler, **self.SMTP_kwargs)


@contextlib.contextmanager
def faulty_smtp_sink(faults: SmtpFaults, *, delay: float = 0.0, host: str = "127.0.0.1") -> Iterator[SmtpSink]:
    """A faulty SMTP server on a free port of `host` for the duration of the block; `delay`: seconds before each
    250 (awaited: connections are served concurrently)."""
    handler = FaultyHandler(faults, delay=delay)
    controller = _FaultyController(
        handler, hostname=host, port=free_port(host), server_hostname="faulty.test", ready_timeout=10
    )
    controller.start()
    try:
        yield SmtpSink(controller, handler)
    finally:
        controller.stop()
