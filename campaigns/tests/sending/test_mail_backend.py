"""DKIM signatures on the mail Django's backend sends (campaigns.sending.backend): sign-in codes, invitations, signed
copies, allauth's mail, alerts. No rule of RULES.md names DKIM for account mail (R-RFC8058 asks it of marketing
messages only); the one test here that names R-RFC8058 proves that a campaign message passing through this
backend keeps its own signature, once.

Each signature is checked with dkimpy's own verifier, given the test key's public half through a `dnsfunc` stub in
place of DNS, on the bytes a real SMTP server received where the test says so."""
import email
import io
from unittest import mock

import dkim
import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, get_connection, send_mail

from campaigns.sending import dkim as campaign_dkim
from campaigns.sending.backend import DkimEmailBackend
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.tests.dkim_keys import (
    DOMAIN,
    SELECTOR,
    SENDER,
    added,
    dkim_configured,
    dns_resolver,
    replaced,
    rsa_key_pair,
    signature_tags,
    substituted,
)
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.smtp_server import smtp_sink
from consent import notifications
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

BACKEND = "campaigns.sending.backend.DkimEmailBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"
COVERED = {"from", "to", "subject", "date", "message-id"}


@pytest.fixture(scope="module")
def key_pair():
    return rsa_key_pair()


@pytest.fixture
def dkim_settings(settings, tmp_path, key_pair):
    settings.EMAIL_BACKEND = BACKEND
    settings.HIPAAMAIL_DKIM_WRAPPED_EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    yield from dkim_configured(settings, tmp_path, key_pair[0])


@pytest.fixture
def dns(key_pair):
    return dns_resolver(key_pair[1])


@pytest.fixture
def sink(settings):
    """A real SMTP server on loopback, with the DKIM backend's wrapped SMTP backend pointed at it."""
    with smtp_sink() as server:
        settings.EMAIL_BACKEND = BACKEND
        settings.HIPAAMAIL_DKIM_WRAPPED_EMAIL_BACKEND = SMTP
        settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        yield server


def _signed_headers(raw: bytes) -> set[str]:
    return set(signature_tags(raw)["h"].lower().split(":"))


def _sign_in_code_over_smtp(sink, code: str = "482913") -> bytes:
    notifications.sign_in_code_send(patient=patient_make(), code=code, minutes=10)
    (record,) = sink.records
    return record.raw


def test_a_sign_in_code_sent_over_smtp_arrives_signed_and_verifies(dkim_settings, sink, dns):
    """What the mail server receives is the signed message: one DKIM-Signature, first, that dkimpy verifies, of
    our domain and selector, whose h= covers From, To, Subject, Date and Message-ID."""
    raw = _sign_in_code_over_smtp(sink)

    assert raw.startswith(b"DKIM-Signature: ")
    assert raw.count(b"DKIM-Signature:") == 1
    assert b"482913" in raw  # the message itself went through, code and all
    assert dkim.verify(raw, dnsfunc=dns) is True
    assert COVERED <= _signed_headers(raw)
    tags = signature_tags(raw)
    assert (tags["d"], tags["s"], tags["a"], tags["c"]) == (DOMAIN, SELECTOR, "rsa-sha256", "relaxed/simple")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(replaced(b"482913", b"000000"), id="body-code"),
        pytest.param(substituted(rb"\r\nSubject: ([^\r]+)", rb"\r\nSubject: \1!"), id="subject"),
        pytest.param(replaced(f"news@{DOMAIN}".encode(), b"news@elsewhere.example"), id="from"),
        pytest.param(substituted(rb"\r\nTo: [^\r]+", b"\r\nTo: someone@elsewhere.example"), id="to"),
        pytest.param(substituted(rb"\r\nDate: [^\r]+", b"\r\nDate: Mon, 01 Jan 2024 00:00:00 -0000"), id="date"),
        pytest.param(substituted(rb"\r\nMessage-ID: <[^>]+>", b"\r\nMessage-ID: <forged@elsewhere.example>"), id="message-id"),
    ],
)
def test_a_tampered_sign_in_code_fails_verification(dkim_settings, sink, dns, tamper):
    """Changing the code in the body, or any of the headers a reader trusts, makes dkimpy reject the message."""
    raw = _sign_in_code_over_smtp(sink)
    tampered = tamper(raw)

    assert tampered != raw
    assert dkim.verify(raw, dnsfunc=dns) is True
    assert dkim.verify(tampered, dnsfunc=dns) is False


def _fixed_message() -> EmailMessage:
    """A message whose every byte is fixed (Date and Message-ID given), so that two sends can be compared."""
    return EmailMessage(
        subject="Your code",
        body="Your code is: 482913\n",
        from_email=SENDER,
        to=["patient@example.org"],
        headers={"Date": "Tue, 01 Dec 2026 10:00:00 -0000", "Message-ID": "<fixed-1@hipaamail.invalid>"},
    )


def _message_with_cc_and_reply_to() -> EmailMessage:
    message = _fixed_message()
    message.cc = ["care-team@example.org"]
    message.reply_to = ["outreach@example.org"]
    return message


def test_r_canspam_headers_cc_and_reply_to_are_signed_and_to_date_message_id_oversigned(dkim_settings, sink, dns):
    """R-CANSPAM-HEADERS: a message with Cc and Reply-To arrives with a signature over both; To, Cc, Reply-To,
    Date and Message-ID are each listed once more than the message has them (RFC 6376 section 5.4)."""
    with get_connection() as connection:
        connection.send_messages([_message_with_cc_and_reply_to()])

    (record,) = sink.records
    signed = signature_tags(record.raw)["h"].lower().split(":")
    assert b"\r\nCc: care-team@example.org\r\n" in record.raw
    assert dkim.verify(record.raw, dnsfunc=dns) is True
    for name in ("to", "cc", "reply-to", "date", "message-id"):
        assert signed.count(name) == 2, name


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(replaced(b"Cc: care-team@example.org", b"Cc: harvest@elsewhere.example"), id="cc"),
        pytest.param(
            replaced(b"Reply-To: outreach@example.org", b"Reply-To: harvest@elsewhere.example"), id="reply-to"
        ),
        pytest.param(added(b"To: harvest@elsewhere.example", first=True), id="second-to"),
        pytest.param(added(b"Cc: harvest@elsewhere.example", first=True), id="second-cc"),
        pytest.param(added(b"Reply-To: harvest@elsewhere.example", first=True), id="second-reply-to"),
        pytest.param(added(b"Date: Mon, 01 Jan 2024 00:00:00 +0000", first=True), id="second-date"),
        pytest.param(added(b"Message-ID: <forged@elsewhere.example>", first=True), id="second-message-id"),
    ],
)
def test_r_canspam_headers_a_changed_or_added_cc_reply_to_to_date_or_message_id_fails(dkim_settings, sink, dns, tamper):
    """R-CANSPAM-HEADERS: changing Cc or Reply-To, or adding a second To, Cc, Reply-To, Date or Message-ID above
    the signed one, makes dkimpy reject the message."""
    with get_connection() as connection:
        connection.send_messages([_message_with_cc_and_reply_to()])
    (record,) = sink.records
    tampered = tamper(record.raw)

    assert tampered != record.raw
    assert dkim.verify(record.raw, dnsfunc=dns) is True
    assert dkim.verify(tampered, dnsfunc=dns) is False


def test_without_a_key_the_bytes_on_the_wire_are_the_wrapped_backends_own(settings, sink):
    """No key configured: nothing is added, and the server receives exactly what Django's SMTP backend sends."""
    settings.HIPAAMAIL_DKIM_PRIVATE_KEY_PATH = ""

    with get_connection(BACKEND) as connection:
        assert connection.send_messages([_fixed_message()]) == 1
    with get_connection(SMTP) as connection:
        assert connection.send_messages([_fixed_message()]) == 1

    through_dkim, plain = (record.raw for record in sink.records)
    assert b"DKIM-Signature" not in through_dkim
    assert through_dkim == plain


def test_with_a_key_the_signature_is_the_only_change_on_the_wire(dkim_settings, sink, dns):
    """The signature is put in front of the bytes Django's SMTP backend would send: nothing else changes."""
    with get_connection(BACKEND) as connection:
        connection.send_messages([_fixed_message()])
    with get_connection(SMTP) as connection:
        connection.send_messages([_fixed_message()])

    signed, plain = (record.raw for record in sink.records)
    assert signed.startswith(b"DKIM-Signature: ")
    assert signed.endswith(plain)
    assert email.message_from_bytes(signed)["DKIM-Signature"] is not None
    assert len(signed) > len(plain)
    assert signed[: len(signed) - len(plain)].count(b"DKIM-Signature:") == 1
    assert dkim.verify(signed, dnsfunc=dns) is True
    assert dkim.verify(plain, dnsfunc=dns) is False


def test_send_mail_through_the_outbox_stores_the_signed_message_and_leaves_the_callers_alone(dkim_settings, dns):
    """With locmem underneath (the tests) the outbox holds the signed message, as a relay would receive it; the
    message the caller built is not changed, so sending it again signs its new serialisation afresh."""
    assert send_mail("Your code", "Your code is: 482913\n", None, ["patient@example.org"]) == 1
    message = _fixed_message()
    with get_connection() as connection:
        connection.send_messages([message])

    first, second = mail.outbox
    for stored in (first, second):
        raw = stored.message().as_bytes(linesep="\r\n")
        assert raw.startswith(b"DKIM-Signature: ")
        assert dkim.verify(raw, dnsfunc=dns) is True
        assert bytes(stored.message()) == raw
        assert stored.message()["Subject"] == "Your code"
    assert b"DKIM-Signature" not in message.message().as_bytes(linesep="\r\n")
    assert second.subject == message.subject and second.to == message.to


def test_the_console_backend_writes_the_signed_message(dkim_settings, dns):
    """The file and console backends (the demo's outbox) write the signed bytes, with their own line ends."""
    dkim_settings.HIPAAMAIL_DKIM_WRAPPED_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    stream = io.StringIO()

    with get_connection(stream=stream) as connection:
        connection.send_messages([_fixed_message()])

    written = stream.getvalue().rsplit("\n" + "-" * 79 + "\n", 1)[0]
    raw = written.encode("utf-8").replace(b"\n", b"\r\n")
    assert raw.startswith(b"DKIM-Signature: ")
    assert dkim.verify(raw, dnsfunc=dns) is True


def test_r_rfc8058_a_campaign_message_through_this_backend_keeps_its_one_signature(dkim_settings, dns):
    """R-RFC8058: the "django" campaign transport signs its assembled bytes (covering both unsubscribe headers)
    before they reach EMAIL_BACKEND; this backend passes them on as they are, signed once, not twice."""
    dkim_settings.HIPAAMAIL_TRANSPORT = "django"
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    sign = mock.patch.object(
        campaign_dkim.DkimSigner, "sign", autospec=True, side_effect=campaign_dkim.DkimSigner.sign
    )
    with sign as sign:
        delivery_dispatch_batch(campaign_id=campaign.pk)

    (stored,) = mail.outbox
    raw = bytes(stored.message())
    assert raw.count(b"DKIM-Signature:") == 1
    assert sign.call_count == 1
    assert dkim.verify(raw, dnsfunc=dns) is True
    assert {"list-unsubscribe", "list-unsubscribe-post"} <= _signed_headers(raw)


def test_a_message_signed_with_another_selector_is_signed_again(dkim_settings, dns):
    """Only our own signature is taken as done: a message that arrives signed by another selector gets ours."""
    message = _fixed_message()
    foreign = b"DKIM-Signature: v=1; a=rsa-sha256; d=" + DOMAIN.encode() + b"; s=old2019; b=AAAA\r\n"
    original = message.message

    def message_with_foreign_signature(*args, **kwargs):
        mime = original()
        mime.as_bytes = lambda unixfrom=False, linesep="\n": foreign + type(mime).as_bytes(mime, linesep="\r\n")
        return mime

    message.message = message_with_foreign_signature
    with get_connection() as connection:
        connection.send_messages([message])

    raw = bytes(mail.outbox[0].message())
    assert raw.count(b"DKIM-Signature:") == 2
    assert signature_tags(raw)["s"] == SELECTOR  # ours first
    assert dkim.verify(raw, dnsfunc=dns) is True


@pytest.mark.parametrize("case", ["no-selector", "missing-file", "not-a-key"])
def test_a_configured_key_that_cannot_be_used_refuses_to_send_unsigned(dkim_settings, sink, tmp_path, case):
    """A key that is configured but unusable raises, even with fail_silently, and nothing reaches the server."""
    if case == "no-selector":
        dkim_settings.HIPAAMAIL_DKIM_SELECTOR = ""
    elif case == "missing-file":
        dkim_settings.HIPAAMAIL_DKIM_PRIVATE_KEY_PATH = str(tmp_path / "absent.pem")
    else:
        (tmp_path / "dkim.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")

    with pytest.raises(ImproperlyConfigured):
        send_mail("Your code", "Your code is: 482913\n", None, ["patient@example.org"], fail_silently=True)

    assert sink.records == []


def test_the_wrapped_backend_cannot_be_this_backend(settings):
    settings.HIPAAMAIL_DKIM_WRAPPED_EMAIL_BACKEND = BACKEND

    with pytest.raises(ImproperlyConfigured, match="another backend"):
        DkimEmailBackend()


def test_the_wrapped_backend_gets_the_connection_arguments(settings):
    """Arguments given to get_connection (host, port, timeout ...) reach the wrapped backend."""
    settings.HIPAAMAIL_DKIM_WRAPPED_EMAIL_BACKEND = SMTP

    connection = get_connection(BACKEND, host="mail.elsewhere.example", port=2525, timeout=7)

    assert (connection.wrapped.host, connection.wrapped.port, connection.wrapped.timeout) == (
        "mail.elsewhere.example",
        2525,
        7,
    )
    assert type(connection.wrapped).__module__ == "django.core.mail.backends.smtp"
