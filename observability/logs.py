"""Log lines for operators: every line logged in a request carries its request id, every line logged in a Celery
task the task's id and name (LogContextFilter); LOG_FORMAT=json writes one JSON object a line (JsonFormatter),
plain the classic text line (the demo and the tests).

Our own formatter rather than python-json-logger: it is thirty lines, and it leaves out on purpose what a
general-purpose formatter writes, the text of an exception (a ValidationError quotes the value it refused: an
address, a name; R-NO-PHI-LEAK). The type and the stack frames are enough to find the bug."""
import json
import logging
import traceback
from datetime import UTC, datetime

from observability.context import current

LOG_FORMATS = ("json", "plain")

# Celery's task tracer logs a failure as "Task %(name)s[%(id)s] raised unexpected: %(exc)r" with the task's
# arguments beside it; the repr of an exception carries its message. Only the type of these goes out.
_CELERY_TRACE_LOGGER = "celery.app.trace"


class LogContextFilter(logging.Filter):
    """Put the request id, task id and task name on every record (empty outside a request or a task), and keep the
    message of an exception out of Celery's task-failure lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current()
        record.request_id = context.request_id
        record.task_id = context.task_id
        record.task_name = context.task_name
        if record.name == _CELERY_TRACE_LOGGER and isinstance(record.args, dict) and "exc" in record.args:
            # Celery passes the exception's repr (its message inside) and the task's arguments, and the same
            # again as `record.data`: keep the names, the ids and the exception's type.
            args = dict(record.args)
            exc_type = record.exc_info[0] if record.exc_info else None
            args["exc"] = exc_type.__name__ if exc_type is not None else "(see the task's log lines)"
            for key in ("args", "kwargs", "traceback"):
                if key in args:
                    args[key] = "-"
            record.args = args
            record.data = {key: args[key] for key in ("id", "name", "hostname", "description") if key in args}
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, request_id, task_id, task_name, process; for an
    exception its type and the stack, never its text."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
            "task_id": getattr(record, "task_id", ""),
            "task_name": getattr(record, "task_name", ""),
            "process": record.process,
        }
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _, tb = record.exc_info
            entry["exception"] = f"{exc_type.__module__}.{exc_type.__qualname__}"
            entry["stack"] = "".join(traceback.format_tb(tb))
        return json.dumps(entry, default=str)


def logging_config(*, log_format: str, level: str) -> dict:
    """The LOGGING dict for `log_format` (settings call it; a bad value is refused with what is allowed)."""
    if log_format not in LOG_FORMATS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)} (it is {log_format!r}).")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "observability.logs.LogContextFilter"}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {"()": "observability.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": log_format, "filters": ["context"]}
        },
        "root": {"handlers": ["console"], "level": level},
        # WeasyPrint and fontTools narrate every PDF at INFO.
        "loggers": {name: {"level": "WARNING"} for name in ("weasyprint", "fontTools")},
    }
