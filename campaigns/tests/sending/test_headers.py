"""R-CANSPAM-HEADERS: truthful From, Reply-To and routing headers; a subject that is not deceptive; a To, Date and
Message-ID that every receiver can read (RFC 5322), and a Message-ID no other installation can give."""
import re
from datetime import UTC, datetime
from email import message_from_bytes, message_from_string
from email.policy import default
from email.utils import parsedate_to_datetime

import pytest
from django.test import override_settings

from campaigns.content import content_of, content_problems, subject_problems
from campaigns.models import Delivery
from campaigns.sending.bounces import delivery_id_from_message_id
from campaigns.sending.messages import CampaignRender, message_id_for, message_id_for_test, message_id_parts
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "subject", ["Re: your visit", "RE: Flu shots", "Fwd: Clinic news", "FW: offer", "  re [2]: follow-up", "AW: Termin"]
)
def test_r_canspam_headers_a_subject_dressed_as_a_reply_or_forward_is_refused(subject):
    """R-CANSPAM-HEADERS: a subject pretending to continue a conversation is deceptive and cannot be submitted."""
    assert [problem.code for problem in subject_problems(subject)] == ["subject_deceptive"]


@pytest.mark.parametrize("subject", ["Flu shots this week", "Regarding your refill", "Reminder: clinic hours", "FWD"])
def test_r_canspam_headers_an_ordinary_subject_passes(subject):
    assert subject_problems(subject) == []


def test_r_canspam_headers_submit_refuses_a_deceptive_subject():
    """R-CANSPAM-HEADERS: content_problems (what submit checks) lists the deceptive subject."""
    campaign = campaign_approved_make(purpose=purpose_make())
    campaign.subject = "Re: your appointment"
    assert "subject_deceptive" in [problem.code for problem in content_problems(content_of(campaign))]


@override_settings(
    DEFAULT_FROM_EMAIL="Riverside Health <news@riverside-health.example>",
    HIPAAMAIL_REPLY_TO="Riverside Health Outreach <outreach@riverside-health.example>",
)
def test_r_canspam_headers_from_and_reply_to_name_the_organisation():
    """R-CANSPAM-HEADERS: the message's From and the envelope sender are the organisation's configured address,
    Reply-To its monitored address, and the Message-ID names the delivery under our own domain."""
    purpose = purpose_make()
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    delivery = Delivery.objects.get(campaign=campaign, patient=patient)

    message = CampaignRender(campaign=campaign).assemble(delivery_id=delivery.pk, to_address=patient.email)
    parsed = message_from_bytes(message.raw, policy=default)

    assert parsed["From"] == "Riverside Health <news@riverside-health.example>"
    assert message.from_address == "news@riverside-health.example"
    assert parsed["Reply-To"] == "Riverside Health Outreach <outreach@riverside-health.example>"
    assert parsed["To"] == patient.email
    assert parsed["Subject"] == campaign.subject
    assert parsed["Message-ID"] == message_id_for(delivery.pk)
    assert re.fullmatch(rf"<delivery-{delivery.pk}\.[0-9a-f]{{16}}@riverside-health\.example>", parsed["Message-ID"])


def _launched_delivery(**campaign_fields) -> tuple:
    purpose = purpose_make()
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose, **campaign_fields)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    return campaign, Delivery.objects.get(campaign=campaign, patient=patient)


# --- Message-ID ---------------------------------------------------------------------------------------------


@override_settings(HIPAAMAIL_MESSAGE_ID_DOMAIN="", DEFAULT_FROM_EMAIL="Riverside Health <News@Riverside-Health.org>")
def test_r_canspam_headers_the_message_id_domain_is_the_senders_unless_message_id_domain_is_set(settings):
    """R-CANSPAM-HEADERS: the Message-ID names the sending domain (DEFAULT_FROM_EMAIL's), or MESSAGE_ID_DOMAIN
    when it is set; never a placeholder like hipaamail.invalid."""
    derived = message_id_for(42)
    settings.HIPAAMAIL_MESSAGE_ID_DOMAIN = "mail.riverside-health.org"
    configured = message_id_for(42)

    assert re.fullmatch(r"<delivery-42\.[0-9a-f]{16}@riverside-health\.org>", derived)
    assert re.fullmatch(r"<delivery-42\.[0-9a-f]{16}@mail\.riverside-health\.org>", configured)


@override_settings(HIPAAMAIL_MESSAGE_ID_DOMAIN="", DEFAULT_FROM_EMAIL="news@bücher.example")
def test_r_canspam_headers_an_international_sending_domain_gives_an_ascii_message_id():
    assert message_id_for(7).endswith("@xn--bcher-kva.example>")


def test_r_canspam_headers_message_ids_differ_between_installations_and_stay_the_same_within_one(settings):
    """R-CANSPAM-HEADERS: two installations sending from the same domain (production and staging, two clinics on
    one provider) never give the same Message-ID to their delivery 42: the id carries a tag derived from the
    installation's never-rotated IDENTIFIER_HASH_KEY. Within one installation it depends on the delivery only, so
    a message sent again after a crash keeps its Message-ID (DESIGN, "Recovery"), and the tag is not the key."""
    settings.IDENTIFIER_HASH_KEY = "installation-one-identifier-hash-key"
    first, again = message_id_for(42), message_id_for(42)
    settings.IDENTIFIER_HASH_KEY = "installation-two-identifier-hash-key"
    other = message_id_for(42)

    assert first == again
    assert other != first
    assert "installation" not in first


def test_r_canspam_headers_message_id_parts_compose_the_message_id_and_the_bounce_reader_reads_it():
    """The sender computes the Message-ID in SQL from `message_id_parts()`; the bounce reader takes it apart with
    them: both agree with `message_id_for`."""
    before, after = message_id_parts()

    assert before + "42" + after == message_id_for(42)
    assert delivery_id_from_message_id(message_id_for(42)) == 42
    assert delivery_id_from_message_id(message_id_for(42).replace("<delivery-42.", "<delivery-42.0")) is None
    assert delivery_id_from_message_id("<delivery-42@hipaamail.invalid>") is None


def test_r_canspam_headers_a_re_assembled_message_keeps_its_message_id():
    """R-CANSPAM-HEADERS: assembled again in a later batch (a re-send after a crash), the delivery's message has
    the same Message-ID, and a new Date."""
    campaign, delivery = _launched_delivery()

    first = CampaignRender(campaign=campaign).assemble(delivery_id=delivery.pk, to_address="ann@example.org")
    second = CampaignRender(campaign=campaign).assemble(delivery_id=delivery.pk, to_address="ann@example.org")

    assert first.message_id == second.message_id == message_id_for(delivery.pk)
    assert first.headers["Message-ID"] == first.message_id


@override_settings(HIPAAMAIL_MESSAGE_ID_DOMAIN="", DEFAULT_FROM_EMAIL="Riverside Health <news@riverside-health.org>")
def test_r_canspam_headers_a_test_send_message_id_is_under_the_same_domain_and_unique():
    """A test send has no delivery: its Message-ID is random, under the same domain and tag, and never read as a
    delivery's by the bounce reader."""
    first, second = message_id_for_test(), message_id_for_test()
    tag = message_id_for(1).split("@")[0].rsplit(".", 1)[1]

    assert re.fullmatch(rf"<test-[0-9a-f]{{24}}\.{tag}@riverside-health\.org>", first)
    assert first != second
    assert delivery_id_from_message_id(first) is None


# --- Date ---------------------------------------------------------------------------------------------------


def test_r_canspam_headers_the_date_has_a_numeric_utc_zone():
    """R-CANSPAM-HEADERS: the Date header is RFC 5322 section 3.3 date-time with the zone as +0000 (not the
    obsolete "GMT" of section 4.3, nor -0000, which says the local zone is unknown), and it is now."""
    campaign, delivery = _launched_delivery()
    before = datetime.now(UTC).replace(microsecond=0)

    message = CampaignRender(campaign=campaign).assemble(delivery_id=delivery.pk, to_address="ann@example.org")

    date = message.headers["Date"]
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000", date)
    assert f"\r\nDate: {date}\r\n".encode() in message.raw
    sent = parsedate_to_datetime(date)
    assert sent.utcoffset().total_seconds() == 0
    assert before <= sent <= datetime.now(UTC)


# --- To -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "to_header", "envelope"),
    [
        ("jozef@bücher.example", b"jozef@xn--bcher-kva.example", "jozef@xn--bcher-kva.example"),
        ("Jozef@BÜCHER.example", b"Jozef@xn--bcher-kva.example", "Jozef@xn--bcher-kva.example"),
        ("józef@bücher.example", "józef@xn--bcher-kva.example".encode(), "józef@xn--bcher-kva.example"),
        ("ann@example.org", b"ann@example.org", "ann@example.org"),
    ],
    ids=["idn-domain", "idn-domain-upper", "utf8-local-part", "ascii"],
)
def test_r_canspam_headers_an_international_address_gives_a_valid_to_and_the_same_envelope(
    address, to_header, envelope
):
    """R-CANSPAM-HEADERS: a patient address with an internationalised domain is written with the domain in IDNA
    (A-labels), the local part as it is: plain ASCII when it is ASCII, UTF-8 (RFC 6532, sent with SMTPUTF8) when
    it is not; never an RFC 2047 encoded word, which is not allowed in an address. RCPT TO names the same address."""
    campaign, delivery = _launched_delivery()

    message = CampaignRender(campaign=campaign).assemble(delivery_id=delivery.pk, to_address=address)

    assert b"\r\nTo: " + to_header + b"\r\n" in message.raw
    assert b"=?" not in message.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\nTo: ", 1)[1].split(b"\r\n", 1)[0]
    assert message.to_address == envelope
    assert message.headers["To"] == to_header.decode()
    parsed = message_from_string(message.raw.decode("utf-8"), policy=default)
    (recipient,) = parsed["To"].addresses
    assert recipient.addr_spec == envelope


# --- HTML ---------------------------------------------------------------------------------------------------


def test_the_html_part_has_the_subject_as_its_title_escaped():
    """The HTML document has a <title> (WCAG 2.4.2; some clients and validators show or require it): the
    subject, HTML-escaped."""
    campaign, delivery = _launched_delivery(subject="Masks & filters <new>")

    message = CampaignRender(campaign=campaign).assemble(delivery_id=delivery.pk, to_address="ann@example.org")

    assert "<title>Masks &amp; filters &lt;new&gt;</title>" in message.html
    assert message.html.index("<title>") < message.html.index("</head>")
