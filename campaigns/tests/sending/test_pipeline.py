"""The send pipeline: messages rendered once and assembled per recipient, the SMTP transport, leases and the
evidence of a message possibly sent twice, a mail server that misbehaves, and the global rate limit."""
import contextlib
import email
import email.policy
import smtplib
import threading
from datetime import timedelta
from unittest import mock

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F
from django.template.loader import render_to_string

from audit.models import AuditEvent
from campaigns import tasks
from campaigns.models import Delivery
from campaigns.periodic import campaign_rewake_task
from campaigns.sending import dispatch
from campaigns.sending.dispatch import TransientSendError, _deliveries_claim, delivery_dispatch_batch
from campaigns.sending.messages import CampaignRender, message_id_for, unsubscribe_token_read
from campaigns.sending.transport import RateLimiter, SmtpTransport
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.smtp_server import free_port, smtp_sink
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _launched(n: int, *, emails: list[str] | None = None, **campaign_fields):
    purpose = purpose_make()
    emails = emails or [None] * n
    for address in emails:
        patient = patient_make(email=address) if address else patient_make()
        authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose, **campaign_fields)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    return campaign


def _statuses(campaign) -> dict[str, str]:
    return {d.patient.email: d.status for d in Delivery.objects.filter(campaign=campaign).select_related("patient")}


def _use_smtp(settings, host: str, port: int) -> None:
    settings.HIPAAMAIL_TRANSPORT = "smtp"
    settings.EMAIL_HOST, settings.EMAIL_PORT = host, port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK = True


# --- Rendered once, assembled per recipient ----------------------------------------------------------------


def test_r_rfc8058_r_canspam_address_assembled_message_is_valid_mime_with_per_recipient_headers(settings):
    """R-RFC8058, R-CANSPAM-ADDRESS: each assembled message is multipart/alternative (text and HTML), carries
    its own To, Message-ID, List-Unsubscribe (its delivery's URL) and List-Unsubscribe-Post, the postal address
    and the unsubscribe link in both footers, and no line longer than 998 characters."""
    settings.SITE_URL = "https://mail.riverside-health.example"
    long_line = "Caf\u00e9 & <b>not bold</b> =3D " * 120  # non-ASCII, HTML, '=' and a very long line
    campaign = _launched(1, subject="Flu shots \u2014 book now", body_text=f"Dear patient,\n{long_line}\nBye")
    render = CampaignRender(campaign=campaign)

    first = render.assemble(delivery_id=101, to_address="ann@example.org")
    second = render.assemble(delivery_id=102, to_address="bob@example.org")

    for assembled, delivery_id, address in ((first, 101, "ann@example.org"), (second, 102, "bob@example.org")):
        assert all(len(line) <= 998 for line in assembled.raw.split(b"\r\n"))
        assert b"\n" not in assembled.raw.replace(b"\r\n", b"")  # CRLF only
        parsed = email.message_from_bytes(assembled.raw, policy=email.policy.default)
        assert parsed.get_content_type() == "multipart/alternative"
        assert parsed["To"] == address
        assert parsed["Subject"] == "Flu shots \u2014 book now"
        assert parsed["Message-ID"] == message_id_for(delivery_id)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = parsed["List-Unsubscribe"].strip("<>")
        assert url.startswith("https://mail.riverside-health.example/unsubscribe/")
        assert unsubscribe_token_read(url.rstrip("/").rsplit("/", 1)[1]) == delivery_id
        assert parsed["Date"]
        text, html = (part.get_content() for part in parsed.iter_parts())
        assert long_line.strip() in text
        assert "Caf\u00e9 &amp; &lt;b&gt;not bold&lt;/b&gt;" in html  # the body is escaped in HTML
        for body in (text, html):
            assert settings.HIPAAMAIL_POSTAL_ADDRESS in body
            assert url in body
            assert render.placeholder not in body
    assert first.unsubscribe_url != second.unsubscribe_url


def test_campaign_is_rendered_once_per_batch_not_per_message():
    campaign = _launched(5)

    with mock.patch("campaigns.sending.messages.render_to_string", wraps=render_to_string) as render:
        delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=5)

    assert render.call_count == 2  # the text and the HTML template, once each
    assert len(mail.outbox) == 5


def test_a_header_injection_in_the_subject_is_refused():
    campaign = _launched(1, subject="Hi\r\nBcc: everyone@example.org")

    with pytest.raises(ValueError):
        CampaignRender(campaign=campaign)


# --- The SMTP transport --------------------------------------------------------------------------------------


def test_smtp_transport_sends_the_assembled_bytes_over_one_connection_reconnecting_every_n(settings):
    """DESIGN.md: one reused connection per batch, reconnecting every few hundred messages (here every 4)."""
    campaign = _launched(10)
    with smtp_sink() as sink:
        _use_smtp(settings, sink.host, sink.port)
        settings.HIPAAMAIL_SMTP_RECONNECT_EVERY = 4
        decided = delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=10)
        records = sink.records

    assert decided == 10
    assert len(records) == 10
    assert len({record.peer for record in records}) == 3  # 4 + 4 + 2
    sent = {d.patient.email: d for d in Delivery.objects.filter(campaign=campaign).select_related("patient")}
    assert {r.recipients[0]: r.message_id for r in records} == {a: d.message_id for a, d in sent.items()}
    assert all(r.list_unsubscribe_post == "List-Unsubscribe=One-Click" for r in records)
    assert mail.outbox == []


def test_r_sec_tls_smtp_transport_refuses_plaintext_to_a_remote_relay(settings):
    """R-SEC-TLS: without TLS the smtp transport sends only to a loopback relay, and only when allowed;
    nothing is claimed when it refuses."""
    campaign = _launched(1)
    settings.HIPAAMAIL_TRANSPORT = "smtp"
    settings.EMAIL_HOST, settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL = "relay.example.org", False, False

    with pytest.raises(ImproperlyConfigured, match="Mail must leave over TLS"):
        delivery_dispatch_batch(campaign_id=campaign.pk)

    settings.EMAIL_HOST, settings.HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK = "127.0.0.1", False
    with pytest.raises(ImproperlyConfigured):
        SmtpTransport()
    delivery = Delivery.objects.get(campaign=campaign)
    assert (delivery.status, delivery.attempts, delivery.lease_expires_at) == ("queued", 0, None)


def test_r_sec_tls_a_relay_without_starttls_gets_nothing_and_the_batch_stays_queued(settings):
    """R-SEC-TLS: with TLS required, a relay that does not offer STARTTLS receives no message."""
    campaign = _launched(2)
    with smtp_sink() as sink:
        _use_smtp(settings, sink.host, sink.port)
        settings.EMAIL_USE_TLS = True
        with pytest.raises(TransientSendError):
            delivery_dispatch_batch(campaign_id=campaign.pk)
        assert sink.records == []
    assert set(_statuses(campaign).values()) == {"queued"}
    assert not Delivery.objects.filter(campaign=campaign, lease_expires_at__isnull=False).exists()


# --- Leases: a worker killed between the mail server's 250 and the commit -----------------------------------


def test_a_worker_killed_after_smtp_before_commit_resends_once_marked_possible_duplicate(settings):
    """R-SEND-EVIDENCE: the message reached the server, the worker died before recording it. Its lease
    expires, the reconciler wakes a worker, the delivery is sent again with the same Message-ID and ends sent
    exactly once in the database, marked possible_duplicate."""
    campaign = _launched(1)
    with smtp_sink() as sink:
        _use_smtp(settings, sink.host, sink.port)
        with (
            mock.patch.object(dispatch, "_deliveries_record", side_effect=SystemExit("worker killed")),
            pytest.raises(SystemExit),
        ):
            delivery_dispatch_batch(campaign_id=campaign.pk)
        delivery = Delivery.objects.get(campaign=campaign)
        assert (delivery.status, delivery.attempts) == ("queued", 1)
        assert delivery.lease_expires_at is not None and not delivery.possible_duplicate

        # While the lease runs, nobody takes it (the worker might only be slow).
        assert delivery_dispatch_batch(campaign_id=campaign.pk) == 0
        Delivery.objects.filter(pk=delivery.pk).update(lease_expires_at=F("created_at"))  # the lease expires

        with mock.patch.object(tasks.campaign_dispatch_task, "delay", side_effect=tasks.campaign_dispatch_task):
            campaign_rewake_task()
        records = sink.records

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.possible_duplicate) == ("sent", 2, True)
    assert delivery.lease_expires_at is None
    assert [r.message_id for r in records] == [delivery.message_id, delivery.message_id]
    assert AuditEvent.objects.filter(action="delivery.batch_dispatched").count() == 1
    campaign.refresh_from_db()
    assert campaign.status == "sent"


def test_the_reconciler_marks_sent_a_campaign_whose_worker_stopped_after_the_last_batch():
    """No queued delivery is left, but the step that marks the campaign sent never ran (its worker stopped right
    after the last batch): the reconciler finishes it, once, and wakes no worker for it. Found by the fault
    suite (campaigns/tests/test_faults.py), which kills a real worker in that window."""
    campaign = _launched(2)
    delivery_dispatch_batch(campaign_id=campaign.pk)  # the last batch; campaign_finish_if_done never runs
    campaign.refresh_from_db()
    assert campaign.status == "sending"

    with mock.patch.object(tasks.campaign_dispatch_task, "delay") as delay:
        campaign_rewake_task()
        campaign_rewake_task()

    delay.assert_not_called()
    campaign.refresh_from_db()
    assert campaign.status == "sent" and campaign.finished_at is not None
    assert AuditEvent.objects.filter(action="campaign.sent", object_id=str(campaign.pk)).count() == 1


def test_the_reconciler_finishes_a_campaign_whose_whole_audience_was_blocked_at_launch():
    """Nobody covered: the launch queues nothing, and if its wake-up is lost the campaign still ends as sent."""
    purpose = purpose_make()
    patient_make()
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):  # the wake-up is lost
        campaign_launch(actor=None, campaign_id=campaign.pk)

    campaign_rewake_task()

    campaign.refresh_from_db()
    assert campaign.status == "sent"
    assert list(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) == ["blocked"]


def test_a_delivery_reclaimed_by_another_worker_after_its_lease_expired_is_not_sent_by_the_first():
    """The lease is the claim's token: a worker whose lease expired (and was taken over) before its sending
    transaction sends nothing; the other worker's claim stands."""
    campaign = _launched(1)
    real_claim = _deliveries_claim

    def claim_then_lose_it(**kwargs):
        claimed = real_claim(**kwargs)
        Delivery.objects.filter(campaign=campaign).update(lease_expires_at=F("lease_expires_at") + timedelta(seconds=1))
        return claimed

    with mock.patch.object(dispatch, "_deliveries_claim", claim_then_lose_it):
        assert delivery_dispatch_batch(campaign_id=campaign.pk) == 1

    delivery = Delivery.objects.get(campaign=campaign)
    assert (delivery.status, delivery.attempts) == ("queued", 1)
    assert mail.outbox == []
    assert not AuditEvent.objects.filter(action="delivery.batch_dispatched").exists()


def test_a_delivery_released_cleanly_is_not_marked_possible_duplicate(settings):
    """The connection drops while the first message is handed over: that one may have reached the server, so it
    is queued again marked possible_duplicate; the second was never started and is released clean."""
    campaign = _launched(2)
    with (
        mock.patch("campaigns.sending.transport.DjangoTransport.send", side_effect=smtplib.SMTPServerDisconnected("x")),
        pytest.raises(TransientSendError),
    ):
        delivery_dispatch_batch(campaign_id=campaign.pk)
    delivery_dispatch_batch(campaign_id=campaign.pk)

    first, second = Delivery.objects.filter(campaign=campaign).order_by("id")
    assert (first.status, first.attempts, first.possible_duplicate) == ("sent", 2, True)
    assert (second.status, second.attempts, second.possible_duplicate) == ("sent", 2, False)


# --- A mail server that misbehaves --------------------------------------------------------------------------


class MisbehavingHandler:
    """Answers RCPT TO or DATA for chosen recipients with a chosen reply, or drops the connection at DATA."""

    def __init__(self, *, rcpt: dict[str, str] | None = None, data: dict[str, str] | None = None, drop=()):
        self.rcpt, self.data, self.drop = rcpt or {}, data or {}, set(drop)
        self.accepted: list[tuple[str, str]] = []  # (recipient, Message-ID)
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt:
            return self.rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        (address,) = envelope.rcpt_tos
        if address in self.drop:
            self.drop.discard(address)  # once: the retry gets through
            server.transport.close()
            return "421 going away"
        if address in self.data:
            return self.data[address]
        parsed = email.message_from_bytes(envelope.original_content or envelope.content)
        with self._lock:
            self.accepted.append((address, parsed["Message-ID"]))
        return "250 accepted"


@contextlib.contextmanager
def misbehaving_server(settings, handler):
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), server_hostname="bad.test")
    controller.start()
    try:
        _use_smtp(settings, controller.hostname, controller.port)
        yield handler
    finally:
        controller.stop()


@pytest.mark.parametrize(
    ("stage", "reply"),
    [("rcpt", "421 4.7.0 try later"), ("rcpt", "451 4.3.0 busy"), ("data", "421 4.7.0 closing"), ("data", "451 4.3.0 busy")],
    ids=["421-rcpt", "451-rcpt", "421-data", "451-data"],
)
def test_a_4xx_keeps_what_was_sent_leaves_the_rest_queued_and_the_retry_finishes(settings, stage, reply):
    """4xx: the server's state, not the recipient's. Messages accepted before it are recorded sent; the
    deferred one and the rest stay queued (released, not leased) and raise TransientSendError, which the
    Celery task retries with backoff; the retry sends each remaining message once."""
    emails = [f"p{i}@example.org" for i in range(4)]
    campaign = _launched(4, emails=emails)
    handler = MisbehavingHandler(**{stage: {emails[1]: reply}})
    with misbehaving_server(settings, handler):
        with pytest.raises(TransientSendError):
            delivery_dispatch_batch(campaign_id=campaign.pk)
        assert _statuses(campaign) == {emails[0]: "sent", emails[1]: "queued", emails[2]: "queued", emails[3]: "queued"}
        assert not Delivery.objects.filter(campaign=campaign, lease_expires_at__isnull=False).exists()

        handler.rcpt, handler.data = {}, {}  # the server recovers
        delivery_dispatch_batch(campaign_id=campaign.pk)

    assert set(_statuses(campaign).values()) == {"sent"}
    assert sorted(address for address, _ in handler.accepted) == sorted(emails)  # once each
    assert not Delivery.objects.filter(campaign=campaign, possible_duplicate=True).exists()


def test_the_dispatch_task_retries_on_a_transient_error():
    assert TransientSendError in tasks.campaign_dispatch_task.autoretry_for
    assert tasks.campaign_dispatch_task.retry_backoff


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_r_bounce_suppress_a_550_fails_that_delivery_with_its_code_and_the_batch_goes_on(settings, stage):
    """R-BOUNCE-SUPPRESS (the failure half; suppression needs a model, see the report): a 5xx to RCPT TO or
    DATA is this recipient's permanent refusal: failed with the code, and the rest of the batch is sent."""
    emails = [f"q{i}@example.org" for i in range(3)]
    campaign = _launched(3, emails=emails)
    handler = MisbehavingHandler(**{stage: {emails[1]: "550 5.1.1 no such user"}})
    with misbehaving_server(settings, handler):
        assert delivery_dispatch_batch(campaign_id=campaign.pk) == 3

    (failed,) = [d for d in Delivery.objects.filter(campaign=campaign).select_related("patient") if d.patient.email == emails[1]]
    assert (failed.status, failed.error, failed.sent_at) == ("failed", "smtp 550", None)
    # Counted as a hard bounce in the results, like one reported later by a DSN or a provider.
    assert failed.bounce_type == "hard" and failed.bounced_at is not None
    assert _statuses(campaign) == {emails[0]: "sent", emails[1]: "failed", emails[2]: "sent"}
    batch = AuditEvent.objects.get(action="delivery.batch_dispatched")
    assert batch.details["failed"] == [failed.pk]


# --- The global rate limit ----------------------------------------------------------------------------------


def test_rate_limit_holds_senders_to_the_limit_per_second_across_limiters(settings):
    """Two limiters (two workers) sharing the Redis counter take at most `limit` permits per second between
    them; a permit over the limit waits for the next second."""
    if not settings.HIPAAMAIL_RATE_LIMIT_REDIS_URL:
        pytest.skip("needs Redis (CELERY_BROKER_URL=redis://...)")
    clock = {"now": 1_000_000_123.25 + free_port()}  # a second nobody else counts in
    slept: list[float] = []

    def sleep(seconds):
        slept.append(round(seconds, 2))
        clock["now"] += seconds

    workers = [
        RateLimiter(limit=3, redis_url=settings.HIPAAMAIL_RATE_LIMIT_REDIS_URL, clock=lambda: clock["now"], sleep=sleep)
        for _ in range(2)
    ]
    for index in range(7):
        workers[index % 2].take(1)

    assert slept == [0.75, 1.0]  # permits 4 and 7 each waited for the next second


def test_rate_limit_holds_a_real_dispatch_to_the_limit(settings):
    """HIPAAMAIL_RATE_LIMIT applies to the one sender: 6 messages at 3 per second wait twice for a new second."""
    from campaigns.sending import transport

    settings.HIPAAMAIL_RATE_LIMIT, settings.HIPAAMAIL_RATE_LIMIT_REDIS_URL = 3, ""
    clock = {"now": 500.5}
    slept: list[float] = []

    def sleep(seconds):
        slept.append(round(seconds, 2))
        clock["now"] += seconds

    limiter = RateLimiter(limit=3, clock=lambda: clock["now"], sleep=sleep)
    campaign = _launched(7)
    with mock.patch.object(transport, "_limiter", limiter):
        while delivery_dispatch_batch(campaign_id=campaign.pk):
            pass

    assert len(mail.outbox) == 7
    assert slept == [0.5, 1.0]


def test_the_demo_outbox_folder_receives_the_assembled_message(settings, tmp_path):
    """The django transport with the filebased backend (the demo's var/outbox) writes the assembled bytes."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = tmp_path
    campaign = _launched(1)

    delivery_dispatch_batch(campaign_id=campaign.pk)

    (written,) = tmp_path.iterdir()
    parsed = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    delivery = Delivery.objects.get(campaign=campaign)
    assert parsed["Message-ID"] == delivery.message_id
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert settings.HIPAAMAIL_POSTAL_ADDRESS in parsed.get_body(preferencelist=("plain",)).get_content()
