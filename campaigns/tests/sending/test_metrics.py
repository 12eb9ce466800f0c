"""Prometheus metrics of THE sender (ADR 0018, docs/operations.md): after real sends through
delivery_dispatch_batch into an SMTP server, /metrics shows what the deliveries say, by reason; it is denied by
default (no METRICS_TOKEN: 404; a wrong or missing bearer token: 401); its labels carry codes, never ids or PHI
(R-NO-PHI-LEAK)."""
import urllib.error
import urllib.request
from unittest import mock

import pytest
from celery import current_app
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from campaigns.models import Delivery
from campaigns.sending.bounces import BounceResult, bounce_message_apply
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.sending.transport import RateLimiter
from campaigns.services.launch import campaign_launch
from campaigns.tests.bounce_samples import arf_report, delivery_sent, exchange_dsn, postfix_dsn
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.sending.test_pipeline import MisbehavingHandler, misbehaving_server
from campaigns.tests.smtp_server import free_port
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make
from observability.exporter import worker_exporter_start
from observability.queues import celery_queue_names

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-the-tests-0123456789abcdef"
ALLOWED_LABELS = {"reason", "stage", "kind", "source", "queue", "le"}


@pytest.fixture
def scrape(client, settings):
    settings.HIPAAMAIL_METRICS_TOKEN = TOKEN

    def read() -> dict[tuple[str, frozenset], float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        text = response.content.decode()
        read.last_text = text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    return read


def _value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _delta(before, after, name: str, **labels) -> float:
    return _value(after, name, **labels) - _value(before, name, **labels)


def test_the_scrape_counts_a_real_send_by_outcome_and_reason(settings, scrape, django_capture_on_commit_callbacks):
    """Six patients: three covered, one revoked after the launch (blocked by the sender's re-check), one never
    authorized (blocked at launch), one whose address the server refuses with 550 (a hard bounce). The scrape
    after the dispatch shows exactly those counts, one batch, a check-to-send time for each sent message, and the
    queued deliveries in the database before and after."""
    purpose = purpose_make()
    emails = [f"metrics{i}@example.org" for i in range(6)]
    patients = [patient_make(email=address) for address in emails]
    for patient in patients[:4] + patients[5:]:
        authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    before = scrape()
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"), django_capture_on_commit_callbacks(execute=True):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    authorization_revoke(actor=None, patient_id=patients[3].pk, purpose_id=purpose.pk, channel="portal")
    launched = scrape()
    handler = MisbehavingHandler(rcpt={emails[5]: "550 5.1.1 no such user"})

    with misbehaving_server(settings, handler):
        assert delivery_dispatch_batch(campaign_id=campaign.pk) == 5

    after = scrape()
    statuses = sorted(Delivery.objects.filter(campaign=campaign).values_list("status", "block_reason"))
    assert statuses == [("blocked", "no_authorization"), ("blocked", "revoked"), ("failed", ""), ("sent", ""),
                        ("sent", ""), ("sent", "")]
    assert _value(launched, "hipaamail_deliveries_queued", kind="campaign") == 5
    assert _value(after, "hipaamail_deliveries_queued", kind="campaign") == 0
    assert _delta(before, launched, "hipaamail_deliveries_blocked_total", reason="no_authorization", stage="launch") == 1
    assert _delta(before, after, "hipaamail_deliveries_sent_total") == 3
    assert _delta(before, after, "hipaamail_deliveries_blocked_total", reason="revoked", stage="send") == 1
    assert _delta(before, after, "hipaamail_deliveries_blocked_total", reason="no_authorization", stage="send") == 0
    assert _delta(before, after, "hipaamail_deliveries_bounced_total", kind="hard", source="smtp") == 1
    assert _delta(before, after, "hipaamail_send_check_to_send_seconds_count") == 3
    assert _delta(before, after, "hipaamail_send_batch_duration_seconds_count") == 1
    # Every message was accepted within the window of its check (ADR 0010), and the histogram says so.
    window = settings.HIPAAMAIL_SEND_CHECK_WINDOW
    within = min(bound for bound in (0.5, 0.75, 1, 2, 5) if bound >= window)
    assert _delta(before, after, "hipaamail_send_check_to_send_seconds_bucket", le=str(float(within))) == 3
    # R-NO-PHI-LEAK: labels are codes; no address, name or id in the whole exposition.
    ours = {labels for (name, labels) in after if name.startswith("hipaamail_")}
    assert {name for labels in ours for name, _ in labels} <= ALLOWED_LABELS
    assert not any(address in scrape.last_text for address in emails)
    assert str(campaign.pk) not in {value for labels in ours for _, value in labels}


def test_each_wait_on_the_rate_limit_is_counted(settings, scrape):
    """A limit of one message a second and two batches in the same second: the second batch waits once."""
    purpose = purpose_make()
    for _ in range(2):
        authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    clock = {"now": 1_700_000_000.25}

    def sleep(seconds):
        clock["now"] += seconds

    limiter = RateLimiter(limit=1, clock=lambda: clock["now"], sleep=sleep)
    before = scrape()

    with mock.patch("campaigns.sending.dispatch.rate_limiter", return_value=limiter):
        assert delivery_dispatch_batch(campaign_id=campaign.pk) == 1
        assert delivery_dispatch_batch(campaign_id=campaign.pk) == 1

    after = scrape()
    assert _delta(before, after, "hipaamail_send_rate_limit_waits_total") == 1
    assert _delta(before, after, "hipaamail_deliveries_sent_total") == 2


def test_the_broker_queue_depth_is_read_at_scrape_time(scrape):
    """Two messages published to the transactional queue and not consumed: the gauge says two more."""
    queue = "transactional"
    assert queue in celery_queue_names()
    before = scrape()
    assert _value(before, "hipaamail_queue_depth_up", source="broker") == 1
    with current_app.connection_for_write() as connection:
        for _ in range(2):
            current_app.send_task("hipaamail.tests.never_consumed", queue=queue, connection=connection)
        try:
            after = scrape()
        finally:
            for _ in range(2):  # take our two messages back, leaving any other in place
                message = connection.SimpleQueue(queue, no_ack=True).get(timeout=2)
                message.ack() if not message.acknowledged else None

    assert _delta(before, after, "hipaamail_broker_queue_messages", queue=queue) == 2


def test_metrics_is_denied_by_default(client, settings):
    """No METRICS_TOKEN: no endpoint (404). With one: 401 without it or with another, in any spelling."""
    settings.HIPAAMAIL_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404

    settings.HIPAAMAIL_METRICS_TOKEN = TOKEN
    missing = client.get("/metrics")
    assert (missing.status_code, missing["WWW-Authenticate"]) == (401, 'Bearer realm="metrics"')
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}x").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ünïcode").status_code == 401
    assert client.get(f"/metrics?token={TOKEN}").status_code == 401
    answered = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answered.status_code == 200
    assert answered["Content-Type"] == CONTENT_TYPE_LATEST
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_the_worker_exporter_serves_the_samples_behind_the_same_token():
    server = worker_exporter_start(address="127.0.0.1", port=free_port(), token=TOKEN)
    assert server is not None
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer nope"}), timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert "hipaamail_deliveries_sent_total" in body
    assert "hipaamail_broker_queue_messages" not in body  # the web's /metrics reads the depths
    assert refused.value.code == 401


def test_bounces_and_complaints_read_from_reports_are_counted_by_kind_and_source(scrape):
    """A soft DSN, then a hard one for the same message, a complaint for another; a repeated report counts once."""
    bounced = delivery_sent(patient=patient_make(email="bounce.metrics@example.org"))
    complained = delivery_sent(patient=patient_make(email="complaint.metrics@example.org"))
    before = scrape()

    soft = exchange_dsn(recipient="bounce.metrics@example.org", message_id=bounced.message_id, status="4.2.2")
    assert bounce_message_apply(soft) == [BounceResult.RECORDED]
    assert bounce_message_apply(soft) == [BounceResult.DUPLICATE]
    hard = postfix_dsn(recipient="bounce.metrics@example.org", message_id=bounced.message_id)
    assert bounce_message_apply(hard) == [BounceResult.RECORDED]
    complaint = arf_report(recipient="complaint.metrics@example.org", message_id=complained.message_id)
    assert bounce_message_apply(complaint) == [BounceResult.RECORDED]

    after = scrape()
    assert _delta(before, after, "hipaamail_deliveries_bounced_total", kind="soft", source="dsn") == 1
    assert _delta(before, after, "hipaamail_deliveries_bounced_total", kind="hard", source="dsn") == 1
    assert _delta(before, after, "hipaamail_complaints_total", source="arf") == 1
