"""Celery's signals, connected once the apps are ready (observability.apps): the task a line is logged in, the
worker's metrics exporter, the multiprocess files of a child that exited."""
import os

from celery import signals
from django.conf import settings

from observability import context

_tokens: dict[str, object] = {}


@signals.task_prerun.connect(weak=False)
def _task_bind(sender=None, task_id=None, task=None, **kwargs):
    _tokens[task_id] = context.task_bind(task_id=task_id or "", task_name=getattr(task, "name", "") or "")


@signals.task_postrun.connect(weak=False)
def _task_unbind(sender=None, task_id=None, **kwargs):
    token = _tokens.pop(task_id, None)
    if token is not None:
        context.task_unbind(token)


@signals.worker_ready.connect(weak=False)
def _exporter_start(sender=None, **kwargs):
    port, token = settings.HIPAAMAIL_METRICS_WORKER_PORT, settings.HIPAAMAIL_METRICS_TOKEN
    if port and token:
        from observability.exporter import worker_exporter_start

        worker_exporter_start(address=settings.HIPAAMAIL_METRICS_WORKER_ADDRESS, port=port, token=token)


@signals.worker_process_shutdown.connect(weak=False)
def _child_files_release(pid=None, **kwargs):
    from observability.metrics import multiprocess_dir

    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
