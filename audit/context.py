"""Who is asking, for the audit trail: the web layer binds the client IP and request id for one request."""
import contextvars
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    ip: str | None = None
    request_id: str = ""


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar("audit_request", default=RequestContext())


def current() -> RequestContext:
    return _current.get()


@contextmanager
def bound(*, ip: str | None, request_id: str):
    token = _current.set(RequestContext(ip=ip, request_id=request_id))
    try:
        yield
    finally:
        _current.reset(token)
