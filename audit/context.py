"""Who is asking, for the audit trail: the web layer binds the client IP and request id for one request."""
import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RequestContext:
    ip: str | None = None
    request_id: str = ""
    api_key_id: int | None = None  # the integration API key this request authenticated with


# The default is frozen (immutable), so sharing it between contexts is safe.
_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "audit_request", default=RequestContext()  # noqa: B039
)


def current() -> RequestContext:
    return _current.get()


@contextmanager
def bound(*, ip: str | None, request_id: str):
    token = _current.set(RequestContext(ip=ip, request_id=request_id))
    try:
        yield
    finally:
        _current.reset(token)


def api_key_bind(api_key_id: int) -> None:
    """Name the API key acting for the rest of this request (the request's own binding ends it): events recorded
    without a user are attributed to the key."""
    _current.set(replace(_current.get(), api_key_id=api_key_id))
