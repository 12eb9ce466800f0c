"""DKIM signatures on campaign messages (R-RFC8058 section 4: the signature covers both unsubscribe headers).

Each signature is checked with dkimpy's own verifier, given the test key's public half through a `dnsfunc`
stub in place of DNS."""
from unittest import mock

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.core import mail
from django.core.exceptions import ImproperlyConfigured

from campaigns.models import Delivery
from campaigns.sending import dkim as campaign_dkim
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.sending.messages import CampaignRender
from campaigns.services.launch import campaign_launch
from campaigns.tests.dkim_keys import (
    DOMAIN,
    SELECTOR,
    added,
    dkim_configured,
    dns_resolver,
    header_count,
    replaced,
    rsa_key_pair,
    signature_tags,
    substituted,
)
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.smtp_server import smtp_sink
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

REQUIRED_IN_H = {
    "from", "to", "subject", "date", "message-id", "reply-to", "cc", "list-unsubscribe", "list-unsubscribe-post",
}
# RFC 6376 section 5.4: each listed once more than it occurs, so that a copy added later breaks the signature.
OVERSIGNED = (
    "from", "to", "cc", "subject", "date", "message-id", "reply-to", "list-unsubscribe", "list-unsubscribe-post",
)


@pytest.fixture(scope="module")
def key_pair():
    return rsa_key_pair()


@pytest.fixture
def dkim_settings(settings, tmp_path, key_pair):
    yield from dkim_configured(settings, tmp_path, key_pair[0])


@pytest.fixture
def dns(key_pair):
    return dns_resolver(key_pair[1])


def _sent_raw(n: int = 1) -> list[bytes]:
    """Launch and dispatch a campaign to `n` covered patients through the configured transport."""
    purpose = purpose_make()
    for _ in range(n):
        authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose, subject="Your CPAP supplies")
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    delivery_dispatch_batch(campaign_id=campaign.pk)
    assert Delivery.objects.filter(campaign=campaign, status="sent").count() == n
    return [bytes(message.message()) for message in mail.outbox]


def test_r_rfc8058_signature_verifies_and_h_covers_both_list_unsubscribe_headers(dkim_settings, dns):
    """R-RFC8058: with a key configured, each message carries a DKIM signature that dkimpy verifies, whose h=
    names List-Unsubscribe and List-Unsubscribe-Post as well as From, To, Subject, Date and Message-ID."""
    raws = _sent_raw(2)

    assert len(raws) == 2
    for raw in raws:
        assert raw.startswith(b"DKIM-Signature: ")
        assert dkim.verify(raw, dnsfunc=dns) is True
        tags = signature_tags(raw)
        signed = tags["h"].lower().split(":")
        assert REQUIRED_IN_H <= set(signed)
        # Oversigned: a second List-Unsubscribe or From added in transit would break the signature.
        assert signed.count("list-unsubscribe") == 2 and signed.count("list-unsubscribe-post") == 2
        assert (tags["d"], tags["s"], tags["a"], tags["c"]) == (DOMAIN, SELECTOR, "rsa-sha256", "relaxed/simple")
    assert set(dns.looked_up) == {f"{SELECTOR}._domainkey.{DOMAIN}.".encode()}
    # Each recipient's own headers are signed: the two signatures differ.
    assert signature_tags(raws[0])["b"] != signature_tags(raws[1])["b"]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(substituted(rb"(List-Unsubscribe: <[^>]*?)/>", rb"\1x/>"), id="unsubscribe-url"),
        pytest.param(
            replaced(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"),
            id="unsubscribe-post",
        ),
        pytest.param(replaced(b"Subject: Your CPAP supplies", b"Subject: Your CPAP supplies!"), id="subject"),
        pytest.param(replaced(f"news@{DOMAIN}".encode(), b"news@elsewhere.example"), id="from"),
        pytest.param(substituted(rb"\r\nTo: [^\r]+", b"\r\nTo: someone@elsewhere.example"), id="to"),
        pytest.param(substituted(rb"Message-ID: <delivery-\d+", b"Message-ID: <delivery-0"), id="message-id"),
        pytest.param(
            replaced(b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://evil.example/u>\r\n\r\n"),
            id="second-list-unsubscribe-added",
        ),
        pytest.param(replaced(b"Hello from Riverside Health.", b"Hello from Riverside Wealth."), id="body"),
        pytest.param(substituted(rb"\r\nReply-To: [^\r]+", b"\r\nReply-To: harvest@elsewhere.example"), id="reply-to"),
        pytest.param(substituted(rb"\r\nDate: [^\r]+", b"\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000"), id="date"),
        pytest.param(added(b"Cc: someone@elsewhere.example"), id="cc-added"),
    ],
)
def test_r_rfc8058_a_tampered_header_or_body_fails_verification(dkim_settings, dns, tamper):
    """R-RFC8058: changing either unsubscribe header (or any other signed header, or the body), or adding a
    second List-Unsubscribe, makes dkimpy's verifier reject the signature."""
    (raw,) = _sent_raw(1)
    tampered = tamper(raw)

    assert tampered != raw
    assert dkim.verify(raw, dnsfunc=dns) is True
    assert dkim.verify(tampered, dnsfunc=dns) is False


def test_r_canspam_headers_h_covers_reply_to_and_cc_and_oversigns_to_date_and_message_id(dkim_settings, dns):
    """R-CANSPAM-HEADERS, R-RFC8058: the signature covers Reply-To (where replies go) and Cc, and lists From, To,
    Subject, Date, Message-ID, Reply-To and both unsubscribe headers once more than the message has them (RFC 6376
    section 5.4), so that a copy of any of them added in transit breaks it."""
    (raw,) = _sent_raw(1)

    signed = signature_tags(raw)["h"].lower().split(":")
    assert dkim.verify(raw, dnsfunc=dns) is True
    assert REQUIRED_IN_H <= set(signed)
    for name in OVERSIGNED:  # Cc too, which a campaign message lacks: adding one breaks the signature
        assert signed.count(name) == 2, name


@pytest.mark.parametrize("first", [True, False], ids=["above", "below"])
@pytest.mark.parametrize(
    "header",
    [
        b"To: someone@elsewhere.example",
        b"Date: Mon, 01 Jan 2024 00:00:00 +0000",
        b"Message-ID: <delivery-1@elsewhere.example>",
        b"Reply-To: harvest@elsewhere.example",
        b"Cc: harvest@elsewhere.example",
        b"From: Riverside Health <news@elsewhere.example>",
        b"Subject: Your CPAP supplies (free!)",
    ],
    ids=lambda header: header.split(b":")[0].decode().lower(),
)
def test_r_canspam_headers_a_second_copy_of_an_oversigned_header_fails_verification(dkim_settings, dns, header, first):
    """R-CANSPAM-HEADERS: a second To, Date, Message-ID, Reply-To, From or Subject (or a Cc) added to a signed
    message, above the original (where a client may show the first copy) or below it, makes dkimpy reject the
    signature."""
    (raw,) = _sent_raw(1)
    tampered = added(header, first=first)(raw)

    name = header.split(b":")[0]
    assert header_count(tampered, name) == header_count(raw, name) + 1
    assert dkim.verify(raw, dnsfunc=dns) is True
    assert dkim.verify(tampered, dnsfunc=dns) is False


def test_r_rfc8058_the_smtp_transport_sends_signed_bytes_that_verify_at_the_server(dkim_settings, dns):
    """R-RFC8058: what the mail server receives over SMTP is signed, and verifies there."""
    with smtp_sink() as sink:
        dkim_settings.HIPAAMAIL_TRANSPORT = "smtp"
        dkim_settings.EMAIL_HOST, dkim_settings.EMAIL_PORT = sink.host, sink.port
        dkim_settings.EMAIL_USE_TLS = dkim_settings.EMAIL_USE_SSL = False
        dkim_settings.HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK = True
        _sent_raw(3)
        records = sink.records

    assert len(records) == 3
    for record in records:
        assert dkim.verify(record.raw, dnsfunc=dns) is True
        assert {"list-unsubscribe", "list-unsubscribe-post"} <= set(signature_tags(record.raw)["h"].lower().split(":"))


def test_without_a_key_messages_are_not_signed(settings):
    settings.HIPAAMAIL_DKIM_PRIVATE_KEY_PATH = ""

    (raw,) = _sent_raw(1)

    assert b"DKIM-Signature" not in raw


def test_the_key_is_read_and_parsed_once_per_process(dkim_settings):
    with mock.patch.object(
        campaign_dkim.serialization, "load_pem_private_key", wraps=serialization.load_pem_private_key
    ) as load:
        first, second = campaign_dkim.dkim_signer(), campaign_dkim.dkim_signer()
        _sent_raw(2)

    assert first is second
    assert load.call_count == 1


@pytest.mark.parametrize("case", ["no-selector", "missing-file", "not-a-key", "not-rsa"])
def test_a_bad_dkim_configuration_stops_the_batch_before_anything_is_claimed(dkim_settings, tmp_path, case):
    """A key that is configured but unusable never lets mail out unsigned: the sender refuses before claiming."""
    if case == "no-selector":
        dkim_settings.HIPAAMAIL_DKIM_SELECTOR = ""
    elif case == "missing-file":
        dkim_settings.HIPAAMAIL_DKIM_PRIVATE_KEY_PATH = str(tmp_path / "absent.pem")
    elif case == "not-a-key":
        (tmp_path / "dkim.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    else:
        (tmp_path / "dkim.pem").write_bytes(
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)

    with pytest.raises(ImproperlyConfigured):
        delivery_dispatch_batch(campaign_id=campaign.pk)

    assert mail.outbox == []
    delivery = Delivery.objects.get(campaign=campaign)
    assert (delivery.status, delivery.attempts, delivery.lease_expires_at) == ("queued", 0, None)


@pytest.mark.parametrize("address", ["jozef@bücher.example", "józef@bücher.example"])
def test_r_canspam_headers_a_message_to_an_international_address_is_signed_over_its_to(dkim_settings, dns, address):
    """R-CANSPAM-HEADERS: the To of an internationalised address (IDNA domain, a UTF-8 local part per RFC 6532) is
    signed as written, and the signature verifies."""
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    delivery = Delivery.objects.get(campaign=campaign)
    message = CampaignRender(campaign=campaign).assemble(delivery_id=delivery.pk, to_address=address)

    raw = campaign_dkim.dkim_signer().sign(message.raw)

    assert b"@xn--bcher-kva.example\r\n" in raw
    assert dkim.verify(raw, dnsfunc=dns) is True
    assert dkim.verify(raw.replace(b"xn--bcher-kva", b"xn--bchor-kva"), dnsfunc=dns) is False
