"""Prometheus metrics of the send pipeline (ADR 0018, docs/operations.md): what THE sender did, counted where it
did it, and the queue depths, read when Prometheus scrapes.

Labels are codes from a short fixed list (a block reason, a bounce kind, a queue name): never an id, an address
or anything else that grows with the data or names a person (R-NO-PHI-LEAK).

One process (the demo, the tests): the default registry. Many processes on a host (gunicorn's workers, Celery's
prefork children): prometheus_client's multiprocess mode, on when PROMETHEUS_MULTIPROC_DIR is set in the
environment before the process starts; each process writes its samples to files there and a scrape adds them up
(`metrics_render`). The queue depths are not samples: they are computed at scrape time, by whoever scrapes."""
import logging
import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def _multiprocess_dir_check() -> None:
    """Before the first metric is made: in multiprocess mode, making one opens its file in the folder, and a
    missing folder would be a bare FileNotFoundError from inside prometheus_client."""
    folder = os.environ.get(MULTIPROCESS_DIR_VARIABLE, "")
    if folder and not os.path.isdir(folder):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"{MULTIPROCESS_DIR_VARIABLE} is {folder!r}, which is not a folder: create it (empty, writable, one per "
            "host, emptied before the processes start) or unset it for one-process metrics."
        )


_multiprocess_dir_check()

DELIVERIES_SENT = Counter(
    "hipaamail_deliveries_sent", "Messages the mail server accepted from THE sender (committed as sent)."
)
DELIVERIES_BLOCKED = Counter(
    "hipaamail_deliveries_blocked",
    "Deliveries recorded blocked, by reason (Delivery.BlockReason) and stage: launch (materialised blocked), "
    "send (the sender's re-check at the moment of sending), journey (a journey step's check).",
    ["reason", "stage"],
)
DELIVERIES_BOUNCED = Counter(
    "hipaamail_deliveries_bounced",
    "Bounces recorded, by kind (hard, soft) and source: smtp (refused with 5xx while sending), dsn, ses.",
    ["kind", "source"],
)
COMPLAINTS = Counter("hipaamail_complaints", "Spam complaints recorded, by source (arf, ses).", ["source"])
RATE_LIMIT_WAITS = Counter(
    "hipaamail_send_rate_limit_waits", "Times a sender waited for the next second of the global rate limit."
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "hipaamail_send_rate_limit_wait_seconds", "Seconds senders spent taking rate-limit tokens, waits included."
)
BATCH_DURATION = Histogram(
    "hipaamail_send_batch_duration_seconds",
    "One dispatch batch, from its claim to its last window's commit (rate-limit waits excluded).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
CHECK_TO_SEND = Histogram(
    "hipaamail_send_check_to_send_seconds",
    "Per sent message: its sent_at minus the checked_at of the coverage check that allowed it (the sender's own "
    "numbers); bounded by SEND_CHECK_WINDOW (ADR 0010).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5),
)


# --- What the sender reports ---------------------------------------------------------------------------------


def send_window_count(*, checked_to_sent: Iterable[float], blocked_reasons: Iterable[str], refused: int) -> None:
    """One committed check-to-send window: the seconds from the check to each accepted message, the reasons of
    the deliveries it blocked, how many the server refused for good (hard bounces)."""
    sent = 0
    for seconds in checked_to_sent:
        CHECK_TO_SEND.observe(max(0.0, seconds))
        sent += 1
    if sent:
        DELIVERIES_SENT.inc(sent)
    deliveries_blocked_count(stage="send", reasons=blocked_reasons)
    if refused:
        DELIVERIES_BOUNCED.labels(kind="hard", source="smtp").inc(refused)


def deliveries_blocked_count(*, stage: str, reasons: Iterable[str] = (), by_reason: dict[str, int] | None = None) -> None:
    counts: dict[str, int] = dict(by_reason or {})
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    for reason, n in counts.items():
        if n:
            DELIVERIES_BLOCKED.labels(reason=reason or "unknown", stage=stage).inc(n)


def delivery_bounce_count(*, kind: str, source: str) -> None:
    """A bounce or complaint recorded (campaigns.sending.bounces)."""
    if kind == "complaint":
        COMPLAINTS.labels(source=source).inc()
    else:
        DELIVERIES_BOUNCED.labels(kind=kind, source=source).inc()


def send_rate_limit_waited() -> None:
    """The rate limiter is about to sleep until the next second (campaigns.sending.transport.RateLimiter.take)."""
    RATE_LIMIT_WAITS.inc()


def send_rate_limit_took(*, seconds: float) -> None:
    RATE_LIMIT_WAIT_SECONDS.inc(max(0.0, seconds))


def send_batch_observe(*, seconds: float) -> None:
    BATCH_DURATION.observe(max(0.0, seconds))


# --- Read at scrape time -------------------------------------------------------------------------------------

# name -> a function returning {label value: depth}; apps register theirs in AppConfig.ready (the database's
# queued deliveries: campaigns), since this package imports no app.
_depth_sources: dict[str, Callable[[], dict[str, float]]] = {}


def queue_depth_source_register(name: str, source: Callable[[], dict[str, float]]) -> None:
    _depth_sources[name] = source


class ScrapeTimeCollector:
    """The gauges that are a question to ask when Prometheus scrapes, not a sample a process keeps: messages
    waiting in the broker per Celery queue, deliveries queued in the database, and whether each could be read."""

    def collect(self):
        from observability.queues import broker_queue_depths

        up = GaugeMetricFamily("hipaamail_queue_depth_up", "1 when the queue depth could be read, by source.",
                               labels=["source"])
        broker = GaugeMetricFamily(
            "hipaamail_broker_queue_messages", "Messages waiting in the broker, per Celery queue.", labels=["queue"]
        )
        try:
            depths = broker_queue_depths()
        except Exception as error:  # noqa: BLE001 - a scrape must answer even when the broker is away
            logger.warning("metrics: broker queue depth not read (%s)", type(error).__name__)
            up.add_metric(["broker"], 0)
        else:
            up.add_metric(["broker"], 1)
            for queue, depth in sorted(depths.items()):
                broker.add_metric([queue], depth)
        yield broker
        for name, source in sorted(_depth_sources.items()):
            gauge = GaugeMetricFamily(
                f"hipaamail_{name}", "Deliveries queued in the database, waiting for the sender, per campaign kind.",
                labels=["kind"],
            )
            try:
                values = source()
            except Exception as error:  # noqa: BLE001 - nor does a failing source stop the scrape
                logger.warning("metrics: %s not read (%s)", name, type(error).__name__)
                up.add_metric([name], 0)
            else:
                up.add_metric([name], 1)
                for label, value in sorted(values.items()):
                    gauge.add_metric([label], value)
            yield gauge
        yield up


class _ProcessCollector:
    """This process's own registry (one-process mode), as a collector of the scrape's registry."""

    def collect(self):
        yield from REGISTRY.collect()


def multiprocess_dir() -> str:
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE, "")


def samples_registry() -> CollectorRegistry:
    """Every process's counters and histograms: the multiprocess files when that mode is on, else this process's."""
    # auto_describe off: registering must not run the scrape-time queries a first time.
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessCollector())
    return registry


def metrics_render(*, scrape_time: bool = True) -> bytes:
    """The text exposition for a scrape: the samples, and (`scrape_time`) the depths read now."""
    registry = samples_registry()
    if scrape_time:
        registry.register(ScrapeTimeCollector())
    return generate_latest(registry)
