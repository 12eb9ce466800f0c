"""SMTP PIPELINING (RFC 2920) in the smtp transport: MAIL FROM, RCPT TO and DATA in one write when the server
advertises it, with the same per-recipient outcomes as without it (R-BOUNCE-SUPPRESS: a 550 to one RCPT fails only
that delivery; a 4xx stops the batch and leaves the rest queued)."""
import contextlib
import shutil
import smtplib
import subprocess
import time
from pathlib import Path
from unittest import mock

import pytest
from aiosmtpd.controller import Controller

from campaigns.models import Delivery
from campaigns.sending import transport
from campaigns.sending.dispatch import TransientSendError, delivery_dispatch_batch
from campaigns.sending.messages import AssembledMessage
from campaigns.sending.transport import SmtpTransport
from campaigns.tests.sending.test_pipeline import (
    MisbehavingHandler,
    _launched,
    _statuses,
    _use_smtp,
    misbehaving_server,
)
from campaigns.tests.smtp_server import free_port
from consent import crypto
from consent.models import Suppression

pytestmark = pytest.mark.django_db


class PipeliningHandler(MisbehavingHandler):
    """The misbehaving server of test_pipeline, advertising PIPELINING (aiosmtpd reads commands line by line, so
    it serves a pipelined client correctly), optionally refusing MAIL FROM, and keeping each message's bytes."""

    def __init__(self, *, mail_reply: str | None = None, pipelining: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.mail_reply, self.pipelining = mail_reply, pipelining
        self.contents: list[bytes] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            self.contents.append(envelope.original_content or envelope.content)
        return reply


@contextlib.contextmanager
def pipelining_server(settings, handler):
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), server_hostname="pipe.test")
    controller.start()
    try:
        _use_smtp(settings, controller.hostname, controller.port)
        settings.HIPAAMAIL_SMTP_PIPELINING = True
        yield handler
    finally:
        controller.stop()


def _message(n: int, body: bytes = b"Hello.\r\n") -> AssembledMessage:
    raw = (
        f"From: news@riverside-health.example\r\nTo: p{n}@example.org\r\nSubject: test\r\n"
        f"Message-ID: <delivery-{n}@hipaamail.invalid>\r\n\r\n"
    ).encode() + body
    return AssembledMessage(
        from_address="news@riverside-health.example", from_header="news@riverside-health.example",
        to_address=f"p{n}@example.org", subject="test", message_id=f"<delivery-{n}@hipaamail.invalid>",
        unsubscribe_url="", headers={}, text="", html="", raw=raw,
    )


def _writes_per_message(settings, *, pipelining: bool) -> tuple[float, list[bytes], list[bytes]]:
    handler = PipeliningHandler(pipelining=pipelining)
    sent = [_message(n, body=b"Hello.\r\n.a line that starts with a dot\r\n.\r\nend\r\n") for n in range(3)]
    with pipelining_server(settings, handler):
        transport = SmtpTransport()
        transport.send(sent[0])  # connection, EHLO and the first message
        real_send = smtplib.SMTP.send
        with mock.patch.object(smtplib.SMTP, "send", autospec=True, side_effect=real_send) as send:
            transport.send(sent[1])
            transport.send(sent[2])
        transport.close()
        time.sleep(0.05)
    return send.call_count / 2, [message.raw for message in sent], handler.contents


def test_with_pipelining_a_message_takes_two_writes_and_arrives_byte_for_byte(settings):
    """MAIL, RCPT and DATA in one write, the content in a second; dot-stuffing keeps lines starting with "."."""
    writes, sent, received = _writes_per_message(settings, pipelining=True)

    assert writes == 2
    assert received == sent


def test_without_pipelining_advertised_the_transport_waits_for_each_reply(settings):
    writes, sent, received = _writes_per_message(settings, pipelining=False)

    assert writes == 4  # MAIL, RCPT, DATA, content: one round trip each
    assert received == sent


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_r_bounce_suppress_pipelined_a_550_fails_only_that_delivery_on_the_same_connection(settings, stage):
    """R-BOUNCE-SUPPRESS: with the replies read together, a 550 to one RCPT (or to its content) still fails only
    that delivery and suppresses its address; the batch goes on over the same connection."""
    emails = [f"q{i}@example.org" for i in range(4)]
    campaign = _launched(4, emails=emails)
    handler = PipeliningHandler(**{stage: {emails[1]: "550 5.1.1 no such user"}})
    opened = []
    real_open = SmtpTransport._open

    def counting_open(self):
        opened.append(1)
        return real_open(self)

    with pipelining_server(settings, handler), mock.patch.object(SmtpTransport, "_open", counting_open):
        assert delivery_dispatch_batch(campaign_id=campaign.pk) == 4

    assert _statuses(campaign) == {emails[0]: "sent", emails[1]: "failed", emails[2]: "sent", emails[3]: "sent"}
    failed = Delivery.objects.get(campaign=campaign, status="failed")
    assert failed.error == "smtp 550"
    assert sorted(address for address, _ in handler.accepted) == [emails[0], emails[2], emails[3]]
    assert len(opened) == 1
    assert Suppression.objects.get(email_digest=crypto.lookup_digest(emails[1])).reason == "hard_bounce"


@pytest.mark.parametrize(
    ("stage", "reply"),
    [("rcpt", "421 4.7.0 try later"), ("rcpt", "451 4.3.0 busy"), ("data", "451 4.3.0 busy"),
     ("mail", "451 4.3.0 sender check deferred")],
    ids=["421-rcpt", "451-rcpt", "451-data", "451-mail"],
)
def test_pipelined_a_4xx_keeps_what_was_sent_and_leaves_the_rest_queued_for_the_retry(settings, stage, reply):
    emails = [f"p{i}@example.org" for i in range(4)]
    campaign = _launched(4, emails=emails)
    handler = PipeliningHandler()
    with pipelining_server(settings, handler):
        delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=1)  # the first goes through
        if stage == "mail":
            handler.mail_reply = reply
        else:
            setattr(handler, stage, {emails[1]: reply})
        with pytest.raises(TransientSendError):
            delivery_dispatch_batch(campaign_id=campaign.pk)
        assert _statuses(campaign) == {emails[0]: "sent", emails[1]: "queued", emails[2]: "queued", emails[3]: "queued"}

        handler.mail_reply, handler.rcpt, handler.data = None, {}, {}  # the server recovers
        delivery_dispatch_batch(campaign_id=campaign.pk)

    assert set(_statuses(campaign).values()) == {"sent"}
    assert sorted(address for address, _ in handler.accepted) == sorted(emails)  # once each


@pytest.mark.parametrize(
    ("handler_class", "server"),
    [(MisbehavingHandler, misbehaving_server), (PipeliningHandler, pipelining_server)],
    ids=["one-command-at-a-time", "pipelined"],
)
def test_a_connection_dropped_mid_batch_keeps_the_accepted_and_requeues_the_rest_without_duplicate(
    settings, handler_class, server
):
    """With or without PIPELINING, a connection dropped at the third recipient keeps the two accepted, leaves the
    rest queued, and the next batch sends each remaining message once."""
    emails = [f"r{i}@example.org" for i in range(5)]
    campaign = _launched(5, emails=emails)
    handler = handler_class(drop={emails[2]})
    with server(settings, handler):
        with pytest.raises(TransientSendError):
            delivery_dispatch_batch(campaign_id=campaign.pk)
        assert _statuses(campaign) == dict(zip(emails, ["sent", "sent", "queued", "queued", "queued"]))
        delivery_dispatch_batch(campaign_id=campaign.pk)

    assert set(_statuses(campaign).values()) == {"sent"}
    assert sorted(address for address, _ in handler.accepted) == sorted(emails)


@pytest.mark.skipif(not shutil.which("smtp-sink") and not Path("/usr/sbin/smtp-sink").exists(),
                    reason="needs Debian postfix's smtp-sink")
def test_pipelined_through_postfix_smtp_sink(settings, tmp_path):
    """Postfix's smtp-sink advertises PIPELINING (the benchmark's sink): a campaign goes through it whole."""
    port = free_port()
    dump = tmp_path / "dump"
    dump.mkdir()
    sink = subprocess.Popen([shutil.which("smtp-sink") or "/usr/sbin/smtp-sink", "-u", "root", "-d", f"{dump}/%M.",
                             f"127.0.0.1:{port}", "100"])
    try:
        time.sleep(0.3)
        _use_smtp(settings, "127.0.0.1", port)
        campaign = _launched(25)
        with mock.patch.object(transport, "_pipelined_sendmail", wraps=transport._pipelined_sendmail) as pipelined:
            assert delivery_dispatch_batch(campaign_id=campaign.pk) == 25
    finally:
        sink.terminate()
        sink.wait(5)

    assert set(_statuses(campaign).values()) == {"sent"}
    assert pipelined.call_count == 25
    dumped = b"".join(path.read_bytes() for path in dump.iterdir())
    for delivery in Delivery.objects.filter(campaign=campaign):
        assert delivery.message_id.encode() in dumped
