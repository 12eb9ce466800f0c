"""Outgoing webhooks (issue 13): the audit trail becomes an outbox of deliveries in the change's own transaction;
each delivery is signed in the Standard Webhooks format (checked with the reference verifier), posted with a lease,
retried with back-off and, after the last attempt, failed with its audit event; payloads hold ids and codes only
(R-NO-PHI-LEAK); administrators manage subscriptions in the browser, others get 404."""
from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from api import periodic
from api.keys import api_key_revoke
from api.models import ApiKey, WebhookDelivery, WebhookSubscription
from api.webhook_delivery import (
    BACKOFF,
    MAX_ATTEMPTS,
    body_of,
    secret_generate,
    signed_headers,
    webhook_deliveries_due,
    webhook_delivery_attempt,
    webhook_delivery_claim,
)
from api.webhooks import (
    AUTHORIZATION_REVOKED,
    AUTHORIZATION_SIGNED,
    DELIVERY_BOUNCED,
    EVENT_TYPES,
    SUPPRESSION_ADDED,
    webhook_deliveries_create,
    webhook_delivery_retry,
    webhook_subscription_create,
    webhook_subscription_delete,
)
from audit import actions
from audit.models import AuditEvent
from audit.services import audit_record
from campaigns.sending.bounces import BounceKind, delivery_bounce_record
from campaigns.tests.bounce_samples import delivery_sent
from conftest import requires_postgresql
from consent import crypto
from consent.services.authorizations import authorization_revoke, authorizations_revoke_locked
from consent.services.suppressions import suppression_record
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


# --- A local receiver: a real HTTP server on a free port ------------------------------------------------------


class Receiver:
    """An HTTP server in a thread that records every request (headers and body) and answers with the next status
    of `statuses` (the last one repeats), after `delay` seconds."""

    def __init__(self, statuses=(204,), delay: float = 0.0, answer_body: bytes = b""):
        self.requests: list[dict] = []
        self.statuses, self.delay, self.answer_body = list(statuses), delay, answer_body
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", str(len(receiver.answer_body)))
                self.end_headers()
                self.wfile.write(receiver.answer_body)
                receiver.received.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/hipaamail"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def subscribe(admin_user, make_key):
    """subscribe(event_types, key=None, url=...) -> (subscription, secret), for a new key when none is given."""

    def make(event_types=(AUTHORIZATION_REVOKED,), key=None, url="https://crm.example.org/hooks/hipaamail"):
        key = key or make_key()[0]
        created = webhook_subscription_create(
            actor=admin_user, api_key_id=key.pk, url=url, event_types=list(event_types)
        )
        return created.subscription, created.secret

    return make


def _revoke(patient, purpose):
    return authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")


# --- Signing ----------------------------------------------------------------------------------------------------


def test_a_signature_verifies_with_the_standard_webhooks_reference_verifier():
    secret = secret_generate()
    payload = {"type": "authorization.revoked", "timestamp": "2026-12-02T10:00:00Z", "data": {"patient_id": 7}}
    body = body_of(payload)

    headers = signed_headers(secret=secret, message_id="msg_0123456789abcdef", body=body)

    assert Webhook(secret).verify(body, headers) == payload
    assert headers["webhook-id"] == "msg_0123456789abcdef"
    assert headers["webhook-signature"].startswith("v1,")
    # The secret is whsec_ and the base64 of 32 random bytes, each one new.
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret_generate() != secret
    # Another secret, another body or another id does not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_generate()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("7", "8"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_other"})


# --- The outbox ---------------------------------------------------------------------------------------------------


def test_a_revocation_creates_one_delivery_per_subscribed_usable_key_and_none_for_the_others(
    subscribe, make_key, admin_user, django_capture_on_commit_callbacks
):
    # Given two keys subscribed to revocations, and four that must hear nothing: subscribed to signatures only,
    # revoked, expired, and a subscription switched off.
    first, _ = subscribe([AUTHORIZATION_REVOKED])
    second, _ = subscribe([AUTHORIZATION_SIGNED, AUTHORIZATION_REVOKED])
    subscribe([AUTHORIZATION_SIGNED])
    revoked_key = make_key()[0]
    subscribe([AUTHORIZATION_REVOKED], key=revoked_key)
    api_key_revoke(actor=admin_user, api_key_id=revoked_key.pk)
    expired_key = make_key(expires_at=timezone.now() + timedelta(hours=1))[0]
    subscribe([AUTHORIZATION_REVOKED], key=expired_key)
    ApiKey.objects.filter(pk=expired_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    off, _ = subscribe([AUTHORIZATION_REVOKED])
    WebhookSubscription.objects.filter(pk=off.pk).update(active=False)
    patient, purpose = patient_make(), purpose_make()
    authorization = authorization_make(patient=patient, purpose=purpose)
    WebhookDelivery.objects.all().delete()  # the signature's deliveries: this test is about the revocation

    # When the patient revokes (through the consent service, which knows nothing of webhooks)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _revoke(patient, purpose)

    # Then exactly the two subscribed usable keys get one delivery each, with the same payload
    deliveries = list(WebhookDelivery.objects.order_by("subscription_id"))
    assert [(d.subscription_id, d.event_type, d.status, d.attempts) for d in deliveries] == [
        (first.pk, AUTHORIZATION_REVOKED, "pending", 0),
        (second.pk, AUTHORIZATION_REVOKED, "pending", 0),
    ]
    event = AuditEvent.objects.get(action=actions.AUTHORIZATION_REVOKED)
    assert deliveries[0].payload == deliveries[1].payload == {
        "type": "authorization.revoked",
        "timestamp": event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "patient_id": patient.pk,
            "purpose": purpose.code,
            "authorization_ids": [authorization.pk],
            "channel": "portal",
        },
    }
    assert deliveries[0].message_id != deliveries[1].message_id
    assert all(d.message_id.startswith("msg_") for d in deliveries)
    # And a worker is woken for each, after the commit only (the audit sealer's callback is the other one).
    webhook_callbacks = [c for c in callbacks if getattr(c, "func", None) is not None]
    assert sorted(c.args[0] for c in webhook_callbacks) == [d.pk for d in deliveries]


def test_a_rolled_back_revocation_leaves_no_delivery_and_wakes_no_worker(
    subscribe, django_capture_on_commit_callbacks
):
    subscribe([AUTHORIZATION_REVOKED])
    patient, purpose = patient_make(), purpose_make()
    authorization = authorization_make(patient=patient, purpose=purpose)

    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        authorizations_revoke_locked(actor=None, authorization_ids=[authorization.pk], channel="portal")
        assert WebhookDelivery.objects.count() == 1  # written in the revocation's transaction...
        raise RuntimeError("the caller's transaction fails after the revocation")

    assert WebhookDelivery.objects.count() == 0  # ... and gone with it
    assert AuditEvent.objects.filter(action=actions.AUTHORIZATION_REVOKED).count() == 0
    assert [c for c in callbacks if getattr(c, "func", None) is not None] == []


def test_without_subscriptions_the_receiver_costs_one_query(django_assert_num_queries):
    event = audit_record(action=actions.AUDIT_VERIFIED, actor_role=actions.SYSTEM)  # not reported: no query
    with django_assert_num_queries(0):
        assert webhook_deliveries_create(event=event) == []
    event.action = actions.AUTHORIZATION_REVOKED
    with django_assert_num_queries(1):
        assert webhook_deliveries_create(event=event) == []


def test_r_no_phi_leak_payloads_of_every_event_carry_ids_and_codes_never_a_name_or_an_address(subscribe):
    """R-NO-PHI-LEAK: a subscriber to all four events receives ids and codes; the patient's email address and name
    appear in no payload, no header and no body we would send."""
    subscription, secret = subscribe(list(EVENT_TYPES))
    patient = patient_make(email="jane.doe.webhooks@example.org", full_name="Jane Webhooks Doe")
    purpose = purpose_make()

    # When the patient signs, a message to her bounces hard (which suppresses her address), and she revokes
    delivery = delivery_sent(patient=patient, purpose=purpose)
    assert delivery_bounce_record(
        message_id=delivery.message_id, recipients=[patient.email], kind=BounceKind.HARD, status="5.1.1", source="dsn"
    ).value == "recorded"
    _revoke(patient, purpose)

    by_type = {}
    for outgoing in WebhookDelivery.objects.filter(subscription=subscription).order_by("id"):
        by_type.setdefault(outgoing.event_type, []).append(outgoing.payload)
    assert sorted(by_type) == sorted(EVENT_TYPES)
    authorization = patient.authorizations.get()
    assert [p["data"] for p in by_type[AUTHORIZATION_SIGNED]] == [
        {"authorization_id": authorization.pk, "patient_id": patient.pk, "purpose": purpose.code, "channel": "web"}
    ]
    assert [p["data"] for p in by_type[DELIVERY_BOUNCED]] == [
        {"delivery_id": delivery.pk, "patient_id": patient.pk, "campaign_id": delivery.campaign_id, "kind": "hard",
         "status": "5.1.1"}
    ]
    (suppression,) = by_type[SUPPRESSION_ADDED]
    assert suppression["data"]["reason"] == "hard_bounce" and suppression["data"]["patient_ids"] == [patient.pk]
    assert [p["data"]["authorization_ids"] for p in by_type[AUTHORIZATION_REVOKED]] == [[authorization.pk]]
    everything = json.dumps([outgoing.payload for outgoing in WebhookDelivery.objects.all()]).lower()
    for phi in ("jane.doe.webhooks", "example.org", "jane", "doe", "webhooks doe"):
        assert phi not in everything
    # And what goes on the wire (body and headers) has none of it either.
    outgoing = WebhookDelivery.objects.filter(subscription=subscription).first()
    wire = json.dumps(signed_headers(secret=secret, message_id=outgoing.message_id, body=body_of(outgoing.payload)))
    assert "jane" not in (wire + body_of(outgoing.payload)).lower()


def test_a_suppression_names_every_patient_with_that_address_digest(subscribe):
    subscription, _ = subscribe([SUPPRESSION_ADDED])
    patient = patient_make()

    record = suppression_record(actor=None, email=patient.email.upper(), reason="complaint")

    (outgoing,) = WebhookDelivery.objects.filter(subscription=subscription)
    assert outgoing.payload["data"] == {"suppression_id": record.pk, "reason": "complaint", "patient_ids": [patient.pk]}


# --- Sending: a real local receiver -----------------------------------------------------------------------------


def _one_revocation_delivery(subscribe, url: str) -> tuple[WebhookDelivery, str]:
    subscription, secret = subscribe([AUTHORIZATION_REVOKED], url=url)
    patient, purpose = patient_make(), purpose_make()
    authorization_make(patient=patient, purpose=purpose)
    _revoke(patient, purpose)
    return WebhookDelivery.objects.get(subscription=subscription), secret


def test_a_2xx_answer_delivers_a_signed_post_with_a_stable_webhook_id(subscribe):
    with Receiver(statuses=(500, 204)) as receiver:
        delivery, secret = _one_revocation_delivery(subscribe, receiver.url)

        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "delivered"

    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == delivery.message_id
    for request in receiver.requests:
        assert request["path"] == "/hooks/hipaamail"
        assert request["headers"]["Content-Type"] == "application/json"
        assert Webhook(secret).verify(request["body"], request["headers"]) == delivery.payload
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered", 2, 204, ""
    )
    assert delivery.delivered_at is not None and delivery.claimed_until is None
    # A delivered delivery is never posted again.
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "skipped"
    assert len(receiver.requests) == 2


def test_failures_back_off_by_the_schedule_then_fail_with_an_audit_event_and_no_response_body(subscribe):
    with Receiver(statuses=(503,), answer_body=b"patient jane@example.org not found") as receiver:
        delivery, _ = _one_revocation_delivery(subscribe, receiver.url)
        waits = []
        for attempt in range(1, MAX_ATTEMPTS):
            before = timezone.now()
            assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
            delivery.refresh_from_db()
            assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", attempt, 503)
            waits.append(delivery.next_attempt_at - before)
            # Not due yet: a wake-up now does nothing.
            assert webhook_delivery_attempt(delivery_id=delivery.pk) == "skipped"
            WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "failed"

    assert [round(wait.total_seconds()) for wait in waits] == [b.total_seconds() for b in BACKOFF]
    assert [b.total_seconds() for b in BACKOFF] == [10, 60, 300, 1800, 7200, 21600, 43200, 86400]
    assert len(receiver.requests) == MAX_ATTEMPTS == 9
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "failed", 9, 503, "HTTP 503"
    )
    failed = AuditEvent.objects.get(action=actions.WEBHOOK_DELIVERY_FAILED)
    assert (failed.object_type, failed.object_id, failed.actor_role) == ("webhook_delivery", str(delivery.pk), "system")
    assert failed.details == {
        "subscription_id": delivery.subscription_id, "event_type": AUTHORIZATION_REVOKED, "attempts": 9,
        "last_status_code": 503,
    }
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "skipped"


def test_a_redirect_is_not_followed_and_a_refused_connection_is_a_short_error(subscribe):
    with Receiver(statuses=(302,)) as receiver:
        delivery, _ = _one_revocation_delivery(subscribe, receiver.url)
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
    assert len(receiver.requests) == 1  # the Location was not visited
    delivery.refresh_from_db()
    assert (delivery.last_status_code, delivery.last_error) == (302, "HTTP 302: redirects are not followed")

    # The receiver is gone now: nothing listens on its port.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (2, None, "no answer: ConnectionError")


def test_the_lease_lets_one_worker_claim_a_delivery_until_it_runs_out(subscribe):
    with Receiver() as receiver:
        delivery, _ = _one_revocation_delivery(subscribe, receiver.url)

        assert webhook_delivery_claim(delivery_id=delivery.pk) is True
        assert webhook_delivery_claim(delivery_id=delivery.pk) is False
        # Another worker's attempt while the lease holds posts nothing.
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "skipped"
        assert receiver.requests == []
        assert webhook_deliveries_due() == []
        # A worker that died holding the lease only delays: once the lease runs out, the delivery is taken again.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
        assert webhook_deliveries_due() == [delivery.pk]
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "delivered"
    assert len(receiver.requests) == 1


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_lease_prevents_a_double_post_by_two_workers_at_once(subscribe):
    """Eight threads (each its own database connection) attempt the same delivery at the same moment while the
    receiver takes half a second to answer: exactly one posts."""
    with Receiver(delay=0.5) as receiver:
        delivery, _ = _one_revocation_delivery(subscribe, receiver.url)
        start = threading.Barrier(8)
        outcomes = []

        def worker():
            try:
                start.wait()
                outcomes.append(webhook_delivery_attempt(delivery_id=delivery.pk))
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    assert sorted(outcomes) == ["delivered"] + ["skipped"] * 7
    assert len(receiver.requests) == 1


def test_the_beat_job_enqueues_due_unclaimed_pending_deliveries_only(subscribe, monkeypatch):
    woken = []
    monkeypatch.setattr(periodic, "webhook_delivery_enqueue", woken.append)
    subscribe([AUTHORIZATION_REVOKED])
    for _ in range(4):
        patient, purpose = patient_make(), purpose_make()
        authorization_make(patient=patient, purpose=purpose)
        _revoke(patient, purpose)
    due, later, claimed, done = WebhookDelivery.objects.order_by("id")
    WebhookDelivery.objects.filter(pk=later.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    assert webhook_delivery_claim(delivery_id=claimed.pk)
    WebhookDelivery.objects.filter(pk=done.pk).update(status="delivered")

    assert periodic.webhook_deliveries_due_enqueue() == [due.pk]
    assert woken == [due.pk]


def test_a_broker_that_does_not_answer_does_not_fail_the_committed_change(subscribe, monkeypatch):
    from api import tasks

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.webhook_deliver_task, "apply_async", broker_down)
    tasks.webhook_delivery_enqueue(123)  # logged; the beat job enqueues it again later


def test_a_delivery_whose_subscription_was_switched_off_fails_without_a_post(subscribe):
    with Receiver() as receiver:
        delivery, _ = _one_revocation_delivery(subscribe, receiver.url)
        WebhookSubscription.objects.filter(pk=delivery.subscription_id).update(active=False)
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "failed"
    assert receiver.requests == []
    assert AuditEvent.objects.filter(action=actions.WEBHOOK_DELIVERY_FAILED, object_id=str(delivery.pk)).exists()


def test_a_secret_under_a_retired_encryption_key_fails_the_delivery_without_a_post(subscribe):
    with Receiver() as receiver:
        delivery, _ = _one_revocation_delivery(subscribe, receiver.url)
        WebhookSubscription.objects.filter(pk=delivery.subscription_id).update(secret="hm1.retired-key.AAAA")
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "failed"
    assert receiver.requests == []
    assert WebhookDelivery.objects.get(pk=delivery.pk).last_error.startswith("the signing secret can no longer")


# --- Subscriptions: services ----------------------------------------------------------------------------------


def test_r_sec_tls_a_receiver_must_be_https_unless_plain_http_is_allowed(subscribe, settings):
    settings.HIPAAMAIL_WEBHOOK_ALLOW_HTTP = False
    with pytest.raises(ValidationError) as refused:
        subscribe(url="http://crm.example.org/hooks")
    assert refused.value.code == "url_refused"
    for bad in ("ftp://crm.example.org/x", "https://user:pw@crm.example.org/x", "not a url"):
        with pytest.raises(ValidationError):
            subscribe(url=bad)
    subscribe(url="https://crm.example.org/hooks")
    # A subscription made while http was allowed is not posted to once it is not.
    delivery, _ = _one_revocation_delivery(subscribe, "https://crm.example.org/ok")
    WebhookSubscription.objects.filter(pk=delivery.subscription_id).update(url="http://crm.example.org/hooks")
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "failed"
    assert WebhookSubscription.objects.count() == 2


def test_a_subscription_keeps_its_secret_encrypted_and_is_audited(subscribe, admin_user, make_key):
    key = make_key()[0]
    subscription, secret = subscribe([AUTHORIZATION_SIGNED, AUTHORIZATION_REVOKED], key=key)

    stored = WebhookSubscription.objects.get(pk=subscription.pk)
    assert secret not in stored.secret and crypto.decrypt(stored.secret) == secret
    created = AuditEvent.objects.get(action=actions.WEBHOOK_SUBSCRIPTION_CREATED)
    assert (created.actor_id, created.object_id) == (admin_user.pk, str(subscription.pk))
    assert created.details == {"api_key_id": key.pk, "event_types": [AUTHORIZATION_REVOKED, AUTHORIZATION_SIGNED]}
    with pytest.raises(ValidationError):
        subscribe(["patient.created"], key=key)
    api_key_revoke(actor=admin_user, api_key_id=key.pk)
    assert WebhookSubscription.objects.get(pk=subscription.pk).active is False
    with pytest.raises(ValidationError) as refused:
        subscribe(key=key)
    assert refused.value.code == "key_unusable"

    webhook_subscription_delete(actor=admin_user, subscription_id=subscription.pk)
    assert not WebhookSubscription.objects.filter(pk=subscription.pk).exists()
    deleted = AuditEvent.objects.get(action=actions.WEBHOOK_SUBSCRIPTION_DELETED)
    assert deleted.details == {"api_key_id": key.pk, "pending_dropped": 0}


# --- In the browser ----------------------------------------------------------------------------------------------


def _pages(key_id: int, subscription_id: int = 1) -> list[tuple[str, str]]:
    return [
        ("get", reverse("integrations:webhook_list", args=[key_id])),
        ("get", reverse("integrations:webhook_create", args=[key_id])),
        ("post", reverse("integrations:webhook_create", args=[key_id])),
        ("post", reverse("integrations:webhook_delete", args=[key_id, subscription_id])),
        ("get", reverse("integrations:webhook_deliveries", args=[key_id, subscription_id])),
        ("post", reverse("integrations:webhook_delivery_retry", args=[key_id, subscription_id, 1])),
    ]


@pytest.mark.parametrize("role", ["marketer", "compliance officer"])
def test_only_administrators_reach_the_webhook_pages_others_get_404(verified_client, subscribe, role):
    subscription, _ = subscribe()
    verified_client.sign_in(role=role)
    for method, url in _pages(subscription.api_key_id, subscription.pk):
        assert getattr(verified_client, method)(url).status_code == 404, url
    assert WebhookSubscription.objects.get(pk=subscription.pk).active


def test_a_staff_member_without_the_second_factor_is_sent_to_sign_in(client, make_key):
    key = make_key()[0]
    response = client.get(reverse("integrations:webhook_list", args=[key.pk]))
    assert response.status_code == 302


def test_an_administrator_adds_a_webhook_sees_the_secret_once_and_reads_its_delivery_log(verified_client, make_key):
    key = make_key()[0]
    admin = verified_client.sign_in(role="administrator")

    form = verified_client.get(reverse("integrations:webhook_create", args=[key.pk]))
    assert form.status_code == 200
    page = form.content.decode()
    for code, description in EVENT_TYPES.items():
        assert code in page and str(description) in page
    refused = verified_client.post(
        reverse("integrations:webhook_create", args=[key.pk]), {"url": "ftp://crm.example.org", "event_types": []}
    )
    assert refused.status_code == 200 and WebhookSubscription.objects.count() == 0

    created = verified_client.post(
        reverse("integrations:webhook_create", args=[key.pk]),
        {"url": "http://127.0.0.1:9/hooks", "event_types": [AUTHORIZATION_REVOKED, SUPPRESSION_ADDED]},
    )

    assert created.status_code == 200
    assert "no-cache" in created["Cache-Control"] or "no-store" in created["Cache-Control"]
    subscription = WebhookSubscription.objects.get()
    secret = crypto.decrypt(subscription.secret)
    assert secret in created.content.decode()
    assert (subscription.api_key_id, subscription.event_types, subscription.created_by_id) == (
        key.pk, [AUTHORIZATION_REVOKED, SUPPRESSION_ADDED], admin.pk
    )
    listing = verified_client.get(reverse("integrations:webhook_list", args=[key.pk]))
    assert listing.status_code == 200
    assert "http://127.0.0.1:9/hooks" in listing.content.decode() and secret not in listing.content.decode()

    # Given three revocations reported, the last one failed for good
    for _ in range(3):
        patient, purpose = patient_make(), purpose_make()
        authorization_make(patient=patient, purpose=purpose)
        _revoke(patient, purpose)
    first, _, third = WebhookDelivery.objects.order_by("id")
    WebhookDelivery.objects.filter(pk=first.pk).update(status="delivered", attempts=1, last_status_code=200,
                                                       delivered_at=timezone.now())
    WebhookDelivery.objects.filter(pk=third.pk).update(status="failed", attempts=9, last_status_code=500,
                                                       last_error="HTTP 500")
    log_url = reverse("integrations:webhook_deliveries", args=[key.pk, subscription.pk])

    log = verified_client.get(log_url)

    assert log.status_code == 200
    html = log.content.decode()
    assert html.count("authorization.revoked") == 3
    assert "Delivered" in html and "Failed (attempts exhausted)" in html and "Pending" in html
    assert "HTTP 500" in html
    retry_url = reverse("integrations:webhook_delivery_retry", args=[key.pk, subscription.pk, third.pk])
    assert html.count("Retry now") == 1 and retry_url in html
    assert html.index(">Failed (attempts exhausted)</span>") < html.index(">Delivered</span>")  # newest first

    # When the administrator retries the failed one now
    retried = verified_client.post(retry_url)
    assert retried.status_code == 302
    third.refresh_from_db()
    assert (third.status, third.attempts) == ("pending", 9)
    assert AuditEvent.objects.filter(action=actions.WEBHOOK_DELIVERY_RETRIED, object_id=str(third.pk)).count() == 1
    # Retrying what has not failed (any more) is refused.
    verified_client.post(retry_url)
    assert AuditEvent.objects.filter(action=actions.WEBHOOK_DELIVERY_RETRIED).count() == 1

    # And deletes it (audited); the log is gone with it.
    deleted = verified_client.post(reverse("integrations:webhook_delete", args=[key.pk, subscription.pk]))
    assert deleted.status_code == 302
    assert WebhookSubscription.objects.count() == 0 and WebhookDelivery.objects.count() == 0
    assert AuditEvent.objects.filter(action=actions.WEBHOOK_SUBSCRIPTION_DELETED, actor=admin).count() == 1
    assert verified_client.get(log_url).status_code == 404


def test_a_subscription_of_another_key_is_a_404(verified_client, subscribe, make_key):
    subscription, _ = subscribe()
    other_key = make_key()[0]
    verified_client.sign_in(role="administrator")
    assert verified_client.get(
        reverse("integrations:webhook_deliveries", args=[other_key.pk, subscription.pk])
    ).status_code == 404
    assert verified_client.post(
        reverse("integrations:webhook_delete", args=[other_key.pk, subscription.pk])
    ).status_code == 404
    assert WebhookSubscription.objects.filter(pk=subscription.pk).exists()


def test_the_delivery_log_is_paginated_newest_first(verified_client, subscribe):
    subscription, _ = subscribe()
    event = audit_record(
        action=actions.AUTHORIZATION_REVOKED, actor_role=actions.PATIENT, object_type="patient", object_id=1,
        patient_id=1, details={"purpose_id": 0, "channel": "portal", "authorization_ids": [1]},
    )
    for _ in range(54):
        webhook_deliveries_create(event=event)
    assert WebhookDelivery.objects.count() == 55
    verified_client.sign_in(role="administrator")
    url = reverse("integrations:webhook_deliveries", args=[subscription.api_key_id, subscription.pk])
    first = verified_client.get(url).content.decode()
    second = verified_client.get(url, {"page": 2}).content.decode()
    assert first.count("<code>authorization.revoked</code>") == 50
    assert second.count("<code>authorization.revoked</code>") == 5
    assert "Page 1 of 2" in first and "Older" in first and "Newer" in second


def test_retry_is_refused_for_a_delivery_that_has_not_failed(subscribe, admin_user):
    delivery, _ = _one_revocation_delivery(subscribe, "https://crm.example.org/x")
    with pytest.raises(ValidationError):
        webhook_delivery_retry(actor=admin_user, delivery_id=delivery.pk)


def test_the_webhook_tasks_run_on_the_transactional_queue_and_the_beat_job_every_10_seconds(settings):
    from celery import current_app as celery_app

    for name in ("api.tasks.webhook_deliver_task", "api.tasks.webhook_deliveries_due_task"):
        assert name in celery_app.tasks
        assert celery_app.amqp.router.route({}, name, args=(), kwargs={})["queue"].name == "transactional"
    assert settings.CELERY_BEAT_SCHEDULE["webhook-deliveries-due"] == {
        "task": "api.tasks.webhook_deliveries_due_task", "schedule": 10.0
    }
