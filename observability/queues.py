"""How many messages wait in the broker, per Celery queue, asked at scrape time: a passive queue declare, which
every kombu transport answers (Redis: the list's length; RabbitMQ: the queue's message count)."""
from django.conf import settings

# A scrape that waits longer than this for the broker answers without the depths (hipaamail_queue_depth_up 0).
BROKER_TIMEOUT_SECONDS = 2.0


def celery_queue_names() -> list[str]:
    """The queues the product routes tasks to: the default queue and every queue of CELERY_TASK_ROUTES."""
    names = {getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")}
    for route in (getattr(settings, "CELERY_TASK_ROUTES", None) or {}).values():
        if isinstance(route, dict) and route.get("queue"):
            names.add(route["queue"])
    return sorted(names)


def broker_queue_depths() -> dict[str, int]:
    from celery import current_app
    from kombu.exceptions import ChannelError

    depths: dict[str, int] = {}
    with current_app.connection_for_read(connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:
        connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        for queue in celery_queue_names():
            channel = connection.channel()
            try:
                _, messages, _ = channel.queue_declare(queue=queue, passive=True)
            except (ChannelError, *connection.channel_errors):
                messages = 0  # Redis keeps no key for an empty queue; RabbitMQ: not declared yet
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001, S110 - a channel RabbitMQ closed for the 404 above
                    pass
            depths[queue] = int(messages)
    return depths
