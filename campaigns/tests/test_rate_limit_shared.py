"""The send rate limit is global on every broker (docs/scaling.md, ADR 0019): with RabbitMQ as the broker, two real
sender processes count SEND_RATE_LIMIT together in the shared Redis, and the SMTP server's receive times show the
pair staying within it. Before, the limit was shared only when the broker was Redis and silently per process with
RabbitMQ (twice the rate here).

Marked `multihost` (make test-multihost); needs PostgreSQL, Redis and RabbitMQ on 127.0.0.1 (skipped without
RabbitMQ)."""
import socket
import time
from collections import Counter
from unittest import mock

import pytest
from celery import current_app as celery_app

from campaigns.models import Campaign
from campaigns.services.launch import campaign_launch
from campaigns.tasks import campaign_dispatch_task
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.smtp_server import smtp_sink
from campaigns.tests.worker import QUEUES, worker_start, worker_stop
from conftest import requires_postgresql, requires_redis
from consent.tests.factories import authorization_make, patient_make, purpose_make

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
SHARED_REDIS = "redis://127.0.0.1:6379/9"


def _rabbitmq_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.multihost,
    requires_postgresql,
    requires_redis,
    pytest.mark.skipif(not _rabbitmq_answers(), reason="needs RabbitMQ on 127.0.0.1:5672"),
    pytest.mark.django_db(transaction=True),
]

LIMIT = 20  # messages per second, for both senders together
PATIENTS = 140
BATCH_SIZE = 10


def _rabbitmq_purge() -> None:
    with celery_app.connection_for_write(RABBITMQ) as broker:
        for queue in QUEUES:
            try:
                broker.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue not declared yet holds nothing
                broker.close()
                broker.connect()


def _wait_ready(paths, timeout=60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(" ready." in path.read_text(errors="replace") for path in paths):
            return
        time.sleep(0.1)
    raise AssertionError("the workers did not start:\n" + "\n".join(p.read_text()[-3000:] for p in paths))


def test_two_senders_on_rabbitmq_stay_within_the_send_rate_limit_together(tmp_path):
    purpose = purpose_make()
    for _ in range(PATIENTS):
        authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    env = {
        "CELERY_BROKER_URL": RABBITMQ,
        "SHARED_REDIS_URL": SHARED_REDIS,  # nothing else in the environment is Redis: the limit must use this
        "SEND_RATE_LIMIT": str(LIMIT),
        "SEND_BATCH_SIZE": str(BATCH_SIZE),
        "HIPAAMAIL_TRANSPORT": "smtp",
    }
    _rabbitmq_purge()
    with smtp_sink() as sink:
        logs = [tmp_path / f"sender-{n}.log" for n in (1, 2)]
        handles = [open(path, "w") for path in logs]  # noqa: SIM115 - closed below
        workers = [
            worker_start(sink, handle, queues="campaigns", name=f"rate-{n}", extra_env=env)
            for n, handle in enumerate(handles, start=1)
        ]
        try:
            _wait_ready(logs)
            # The launch's own wake-up would go to this process's broker (Redis): the senders listen on RabbitMQ,
            # so wake both there, as the launch and the reconciler would in a RabbitMQ installation.
            with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
                campaign_launch(actor=None, campaign_id=campaign.pk)
            with celery_app.connection_for_write(RABBITMQ) as broker:
                for _ in workers:
                    campaign_dispatch_task.apply_async((campaign.pk,), connection=broker)
            deadline = time.monotonic() + 60
            while len(sink.records) < PATIENTS and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            for worker in workers:
                worker_stop(worker)
            for handle in handles:
                handle.close()
            _rabbitmq_purge()
        output = "\n".join(path.read_text(errors="replace")[-3000:] for path in logs)
        times = sorted(record.received_at for record in sink.records)

    assert len(times) == PATIENTS, output
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENT
    # Both processes sent: each ran a dispatch task and claimed batches under the same limit.
    for path in logs:
        assert "campaigns.tasks.campaign_dispatch_task" in path.read_text(errors="replace"), output
    # Tokens are granted per wall-clock second in Redis, before a batch is claimed; a batch granted near the end of
    # one second is received in the next. So any n consecutive seconds of receive times hold at most the n
    # seconds' allowance and the one before theirs: (n + 1) x LIMIT. Counted per process, two senders would put
    # 2 x LIMIT in every second and break this from n = 2 on.
    per_second = Counter(int(t) for t in times)
    first, last = min(per_second), max(per_second)
    for start in range(first, last + 1):
        for end in range(start, last + 1):
            in_window = sum(per_second[second] for second in range(start, end + 1))
            assert in_window <= (end - start + 2) * LIMIT, (start - first, end - first, dict(per_second))
    elapsed = times[-1] - times[0]
    # The run spends PATIENTS / LIMIT seconds of allowance; the first second's messages may be received as late as the
    # start of the next second (granted near its end), the last second's as early as its start: so at least
    # PATIENTS / LIMIT - 2 seconds, less one batch's hand-over (0.5 s allowed). Limited per process, two senders
    # would be done in (PATIENTS - 2 x LIMIT) / (2 x LIMIT) = 2.5 s, well under it.
    assert elapsed >= (PATIENTS - 2 * LIMIT) / LIMIT - 0.5, f"{PATIENTS} messages in {elapsed:.2f} s"
