"""A revocation reaches a CRM's receiver through a real Celery worker over Redis, signed in the Standard Webhooks
format. Nothing is mocked between the consent service and the receiver: the revocation's transaction writes the
outbox row, its on_commit hook publishes the wake-up to the broker, a separate worker process (test settings, this
test's database, the "transactional" queue as in production) claims, signs and posts it to a local HTTP server."""
import tempfile
import time
from types import SimpleNamespace

import pytest
from standardwebhooks.webhooks import Webhook

from api.models import WebhookDelivery
from api.tests.test_webhooks import Receiver
from api.webhooks import AUTHORIZATION_REVOKED, webhook_subscription_create
from campaigns.tests.worker import purge_broker, worker_start, worker_stop
from conftest import requires_postgresql, requires_redis
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = [
    pytest.mark.worker,
    requires_postgresql,
    requires_redis,
    pytest.mark.django_db(transaction=True),
]

READY_TIMEOUT = 60
DELIVERY_TIMEOUT = 5  # seconds from the revocation's commit to the receiver's answer
NO_MAIL_SERVER = SimpleNamespace(host="127.0.0.1", port=9)  # the worker sends no mail here


def _wait_until_ready(worker, log) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and worker.poll() is None:
        log.seek(0)
        if " ready." in log.read():
            return
        time.sleep(0.1)
    raise AssertionError("the worker did not start")


def test_a_revocation_reaches_the_receiver_signed_through_a_real_worker(admin_user, make_key):
    # Given a CRM's receiver subscribed to revocations, and a patient with an authorization
    key = make_key()[0]
    patient, purpose = patient_make(), purpose_make()
    authorization = authorization_make(patient=patient, purpose=purpose)
    with Receiver() as receiver, tempfile.TemporaryFile(mode="w+") as log:
        created = webhook_subscription_create(
            actor=admin_user, api_key_id=key.pk, url=receiver.url, event_types=[AUTHORIZATION_REVOKED]
        )
        purge_broker()
        worker = worker_start(NO_MAIL_SERVER, log, queues="transactional", name="webhooks")
        try:
            _wait_until_ready(worker, log)

            # When the patient revokes (the consent service; the worker hears of it only through the broker)
            revoked_at = time.monotonic()
            authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")
            arrived = receiver.received.wait(DELIVERY_TIMEOUT)
            elapsed = time.monotonic() - revoked_at
            # The worker records the outcome just after the receiver answers.
            deadline = time.monotonic() + DELIVERY_TIMEOUT
            while time.monotonic() < deadline and not WebhookDelivery.objects.filter(status="delivered").exists():
                time.sleep(0.05)
        finally:
            worker_stop(worker)
            log.seek(0)
            print(f"worker output (exit code {worker.returncode}):\n{log.read()}")

    # Then the receiver got one signed POST within seconds, which the reference verifier accepts
    assert arrived, f"no POST within {DELIVERY_TIMEOUT}s; see the worker output"
    assert elapsed < DELIVERY_TIMEOUT
    (request,) = receiver.requests
    payload = Webhook(created.secret).verify(request["body"], request["headers"])
    assert payload["type"] == "authorization.revoked"
    assert payload["data"] == {
        "patient_id": patient.pk,
        "purpose": purpose.code,
        "authorization_ids": [authorization.pk],
        "channel": "portal",
    }
    delivery = WebhookDelivery.objects.get()
    assert request["headers"]["webhook-id"] == delivery.message_id
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 204)
