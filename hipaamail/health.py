"""Health endpoints for load balancers and orchestrators (ADR 0017). Both public (no sign-in; hipaamail/urls.py marks
them with `public(...)`), both JSON, neither says more than which check is down: no host name, no version, no
exception text (the reason goes to the log, for the operator).

- `GET /health/live` (liveness): the process answers. No dependency is checked, so a database outage does not make
  the load balancer kill every web process at once: that is what readiness is for.
- `GET /health/ready` (readiness): 200 when the database, the cache, the broker and at least one worker on each
  Celery queue answer; 503 naming the checks that failed. The checks run concurrently, each with a short timeout,
  so a probe answers within about two seconds whatever is down (over Redis or RabbitMQ; about four in the demo,
  whose filesystem broker is polled: HIPAAMAIL_HEALTH_WORKER_SECONDS).

The database and cache checks are django-health-check's; the broker check is ours (its Redis check speaks to Redis
only; kombu's connection covers Redis and RabbitMQ alike), and so is the workers' (QueueWorkers: the package's
Celery ping, per queue, over a connection of its own). The view is ours: the package's views print each check's
error text.
"""
import asyncio
import dataclasses
import datetime
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import JsonResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_safe
from health_check.base import HealthCheck
from health_check.checks import Cache, Database
from health_check.exceptions import ServiceUnavailable
from kombu.pidbox import Mailbox

from hipaamail.celery import app as celery_app

logger = logging.getLogger(__name__)

OK, UNAVAILABLE = "ok", "unavailable"
BROKER_TIMEOUT = datetime.timedelta(seconds=2)


def worker_answer_timeout() -> datetime.timedelta:
    """How long the workers have to answer a ping (and then to list their queues): settings'
    HIPAAMAIL_HEALTH_WORKER_SECONDS, a second over Redis or RabbitMQ (workers answer within milliseconds unless they
    are gone or wedged), more on a polled broker, where the command and the answer each wait for a poll."""
    return datetime.timedelta(seconds=settings.HIPAAMAIL_HEALTH_WORKER_SECONDS)


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker accepts a connection (Redis or RabbitMQ, through kombu)."""

    timeout: datetime.timedelta = dataclasses.field(default=BROKER_TIMEOUT, repr=False)

    def run(self) -> None:
        try:
            with celery_app.connection_for_write() as connection:
                connection.ensure_connection(
                    max_retries=1, interval_start=0, interval_step=0, timeout=self.timeout.total_seconds()
                )
        except Exception as error:  # kombu's OperationalError, OSError, a transport's own: all mean "down"
            raise ServiceUnavailable("the broker does not accept connections") from error


@dataclasses.dataclass
class QueueWorkers(HealthCheck):
    """At least one worker consuming `queue` answers a ping, then lists its queues (Celery's `ping` and
    `active_queues` control commands, as django-health-check's Ping sends them, narrowed to one queue: its own
    checks only CELERY_TASK_QUEUES, which this project routes without).

    The commands go over a connection and a mailbox of the check's own, not through the Celery app's producer pool:
    that pool, once used, leaves the process in a state where a later fork hangs its children (the audit chain's
    parallel walk forks; hipaamail/tests/test_health.py proves the walk still runs after a probe)."""

    queue: str = ""
    answer_timeout: datetime.timedelta = dataclasses.field(default_factory=worker_answer_timeout, repr=False)

    @property
    def timeout(self) -> datetime.timedelta:
        """The check's wall-clock budget (django-health-check's, which adds a second): the ping listens for answers
        until `answer_timeout` passes without a new one, then the queues' question is answered within one more."""
        return 2 * self.answer_timeout

    def run(self) -> None:
        try:
            queues = worker_queues_answering(timeout=self.answer_timeout.total_seconds())
        except Exception as error:  # the broker is away: the broker check says so; no worker can be asked
            raise ServiceUnavailable("the workers cannot be asked") from error
        if self.queue not in queues:
            raise ServiceUnavailable(f"no worker answers on the {self.queue} queue")


def worker_queues_answering(*, timeout: float) -> set[str]:
    """The queues consumed by the workers that answer a ping within `timeout` seconds, asked over a connection and
    a mailbox of this call's own (see QueueWorkers)."""
    mailbox = Mailbox(celery_app.conf.control_exchange, type="fanout", accept=["json"], serializer="json")
    with celery_app.connection_for_write() as connection:
        # Fail at once when the broker is away (kombu would otherwise retry the broadcast's connection).
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        pongs = mailbox(connection)._broadcast("ping", reply=True, timeout=timeout)
        workers = [name for answer in pongs or [] for name, reply in answer.items() if reply == {"ok": "pong"}]
        if not workers:
            return set()
        answers = mailbox(connection)._broadcast(
            "active_queues", reply=True, timeout=timeout, destination=workers, limit=len(workers)
        )
    return {queue.get("name") for answer in answers or [] for queues in answer.values() for queue in queues}


def worker_queues() -> list[str]:
    """Every queue tasks are routed to (settings.CELERY_TASK_ROUTES) and the default one, in a stable order."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values() if "queue" in route}
    return sorted(routed | {settings.CELERY_TASK_DEFAULT_QUEUE})


def readiness_checks() -> dict[str, HealthCheck]:
    return {
        "database": Database(),
        "cache": Cache(),
        "broker": Broker(),
        **{f"workers:{queue}": QueueWorkers(queue=queue) for queue in worker_queues()},
    }


async def _results(checks: dict[str, HealthCheck], executor: ThreadPoolExecutor) -> dict[str, str]:
    results = await asyncio.gather(*(check.get_result(executor) for check in checks.values()))
    return {name: UNAVAILABLE if result.error else OK for name, result in zip(checks, results)}


def readiness() -> dict[str, str]:
    """Every check's state, the checks run concurrently. Their threads are the probe's own and end with it: the
    event loop's default executor would leave idle threads behind in the process, and a process that forks
    later (the audit chain's parallel walk) must not carry threads it did not start."""
    checks = readiness_checks()
    with ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health") as executor:
        return async_to_sync(_results)(checks, executor)


def _json(body: dict, *, status: int) -> JsonResponse:
    response = JsonResponse(body, status=status)
    add_never_cache_headers(response)
    return response


@require_safe
def live(request) -> JsonResponse:
    """Liveness: this process serves requests. Nothing else is asked."""
    return _json({"status": OK}, status=200)


@require_safe
def ready(request) -> JsonResponse:
    """Readiness: 200 when every dependency answers, else 503 with the failed checks named."""
    checks = readiness()
    failed = [name for name, state in checks.items() if state != OK]
    if failed:
        # The checks logged their reasons (django-health-check's "health_check" logger); this names the outcome.
        logger.warning("readiness: unavailable: %s", ", ".join(failed))
        return _json({"status": UNAVAILABLE, "failed": failed, "checks": checks}, status=503)
    return _json({"status": OK, "checks": checks}, status=200)
