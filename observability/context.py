"""What a log line belongs to: the request being served (its request id) or the Celery task being run (its id and
name). The web layer binds the request (hipaamail.middleware.RequestIdMiddleware), Celery's task signals bind the
task (observability.apps); the log filter and the error scrubber read it. Ids and task names only, never anything
a person typed."""
import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LogContext:
    request_id: str = ""
    task_id: str = ""
    task_name: str = ""


# A frozen dataclass: the default is never mutated, only replaced.
_current: contextvars.ContextVar[LogContext] = contextvars.ContextVar("observability_log", default=LogContext())  # noqa: B039


def current() -> LogContext:
    return _current.get()


@contextmanager
def request_bound(*, request_id: str):
    token = _current.set(replace(_current.get(), request_id=request_id))
    try:
        yield
    finally:
        _current.reset(token)


def task_bind(*, task_id: str, task_name: str) -> contextvars.Token:
    """Bind a task for the lines it logs; a task run eagerly inside a request keeps that request's id too."""
    return _current.set(replace(_current.get(), task_id=task_id or "", task_name=task_name or ""))


def task_unbind(token: contextvars.Token) -> None:
    _current.reset(token)
