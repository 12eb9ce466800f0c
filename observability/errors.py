"""Error reports to Sentry (sentry-sdk with its Django and Celery integrations), on only when SENTRY_DSN is set,
and stripped of PHI before they leave (R-NO-PHI-LEAK, ADR 0018).

The scrubber is an allow-list: an event is rebuilt from the fields known to carry no value a person gave us —
exception types and stack frames without their local variables, the request's method and path (no query string,
body, cookies, or headers beyond a short safe list), the user's id only, log messages as their templates without
their arguments, the request and task ids. Everything else is dropped, whatever a future SDK version adds, so a
new field never leaks by default. What is lost for debugging (an exception's text, a frame's variables) is what
could quote a patient's name, address or record number."""
import logging
from urllib.parse import urlsplit, urlunsplit

from observability.context import current

logger = logging.getLogger(__name__)

SCRUBBED = "[scrubbed]"

# Request headers that name no person and carry no secret.
SAFE_HEADERS = frozenset({"accept", "content-length", "content-type", "host", "x-forwarded-proto", "x-request-id"})
_SAFE_TOP_LEVEL = frozenset({
    "event_id", "timestamp", "start_timestamp", "level", "platform", "logger", "transaction", "transaction_info",
    "server_name", "release", "environment", "dist", "sdk", "fingerprint", "type", "measurements",
})
_SAFE_CONTEXTS = frozenset({"runtime", "os", "trace"})
_SAFE_TRACE_KEYS = frozenset({"trace_id", "span_id", "parent_span_id", "op", "status", "origin"})
_SAFE_TAGS = frozenset({"celery_task_name", "celery_task_id", "request_id", "task_id", "task_name", "status_code"})
_SAFE_FRAME_KEYS = frozenset({
    "filename", "abs_path", "function", "module", "lineno", "colno", "in_app", "context_line", "pre_context",
    "post_context", "platform",
})
# A span's description is kept only where it is code's own name for the work (a middleware, a view, a task name);
# a database span's description is its SQL, which a driver may have filled with the parameters.
_SAFE_SPAN_DESCRIPTION_OPS = ("middleware.", "view.", "event.django", "template.", "queue.", "celery.", "function")
_SAFE_SPAN_KEYS = frozenset({
    "span_id", "trace_id", "parent_span_id", "same_process_as_parent", "op", "status", "start_timestamp",
    "timestamp", "origin",
})
_SAFE_BREADCRUMB_KEYS = frozenset({"timestamp", "category", "level", "type"})


def _frames(stacktrace: dict | None) -> dict | None:
    if not isinstance(stacktrace, dict):
        return None
    return {
        "frames": [
            {key: value for key, value in frame.items() if key in _SAFE_FRAME_KEYS}
            for frame in stacktrace.get("frames") or []
            if isinstance(frame, dict)
        ]
    }


def _exception_values(exception: dict | None) -> dict | None:
    """Each exception of the chain by its type, module and stack; its text (`value`) never."""
    if not isinstance(exception, dict):
        return None
    values = []
    for value in exception.get("values") or []:
        kept = {key: value[key] for key in ("type", "module", "thread_id") if key in value}
        if "value" in value:
            kept["value"] = SCRUBBED
        mechanism = value.get("mechanism")
        if isinstance(mechanism, dict):
            kept["mechanism"] = {key: mechanism[key] for key in ("type", "handled", "exception_id", "parent_id",
                                                                  "is_exception_group", "source") if key in mechanism}
        if value.get("stacktrace"):
            kept["stacktrace"] = _frames(value["stacktrace"])
        values.append(kept)
    return {"values": values}


def _request(request: dict | None) -> dict | None:
    if not isinstance(request, dict):
        return None
    kept: dict = {}
    if "method" in request:
        kept["method"] = request["method"]
    url = request.get("url")
    if isinstance(url, str):
        parts = urlsplit(url)
        kept["url"] = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    headers = request.get("headers")
    if isinstance(headers, dict):
        kept["headers"] = {name: value for name, value in headers.items() if name.lower() in SAFE_HEADERS}
    for dropped in ("data", "query_string", "cookies", "env"):
        if dropped in request:
            kept[dropped] = SCRUBBED
    return kept


def _logentry(logentry: dict | None) -> dict | None:
    """A log record's template ("campaign %s: ..."), without the values it was formatted with."""
    if not isinstance(logentry, dict) or not isinstance(logentry.get("message"), str):
        return None
    return {"message": logentry["message"]}


def event_scrub(event: dict, hint: dict | None = None) -> dict:
    """Sentry's `before_send` and `before_send_transaction`: the event rebuilt from the allow-list above."""
    scrubbed = {key: value for key, value in event.items() if key in _SAFE_TOP_LEVEL}
    if "exception" in event:
        scrubbed["exception"] = _exception_values(event["exception"])
    if isinstance(event.get("threads"), dict):
        scrubbed["threads"] = {
            "values": [
                {key: thread[key] for key in ("id", "name", "crashed", "current", "main") if key in thread}
                | ({"stacktrace": _frames(thread["stacktrace"])} if thread.get("stacktrace") else {})
                for thread in event["threads"].get("values") or []
            ]
        }
    if "request" in event:
        scrubbed["request"] = _request(event["request"])
    user = event.get("user")
    if isinstance(user, dict) and user.get("id") is not None:
        scrubbed["user"] = {"id": str(user["id"])}
    if "logentry" in event and (logentry := _logentry(event["logentry"])):
        scrubbed["logentry"] = logentry
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        scrubbed["contexts"] = {
            name: ({k: v for k, v in value.items() if k in _SAFE_TRACE_KEYS} if name == "trace" else value)
            for name, value in contexts.items()
            if name in _SAFE_CONTEXTS and isinstance(value, dict)
        }
    tags = {key: value for key, value in (event.get("tags") or {}).items() if key in _SAFE_TAGS}
    context = current()
    for key in ("request_id", "task_id", "task_name"):
        if getattr(context, key):
            tags[key] = getattr(context, key)
    if tags:
        scrubbed["tags"] = tags
    if isinstance(event.get("breadcrumbs"), dict):
        scrubbed["breadcrumbs"] = {
            "values": [crumb for crumb in map(breadcrumb_scrub, event["breadcrumbs"].get("values") or []) if crumb]
        }
    if isinstance(event.get("spans"), list):
        scrubbed["spans"] = [_span(span) for span in event["spans"] if isinstance(span, dict)]
    return scrubbed


def _span(span: dict) -> dict:
    kept = {key: value for key, value in span.items() if key in _SAFE_SPAN_KEYS}
    op = str(span.get("op") or "")
    if op.startswith(_SAFE_SPAN_DESCRIPTION_OPS) and "description" in span:
        kept["description"] = span["description"]
    return kept


def breadcrumb_scrub(crumb: dict, hint: dict | None = None) -> dict | None:
    """Sentry's `before_breadcrumb`: when and what kind (a log line of which logger, a query, an HTTP call), never
    its message or data (a formatted log line, SQL with its parameters, a URL with its query string)."""
    if not isinstance(crumb, dict):
        return None
    return {key: value for key, value in crumb.items() if key in _SAFE_BREADCRUMB_KEYS}


def sentry_init(*, dsn: str, environment: str = "", release: str = "", traces_sample_rate: float = 0.0,
                transport=None) -> bool:
    """Turn error reporting on when `dsn` is set; off (and nothing imported) otherwise. Returns whether it is on.
    `transport`: for the tests, which capture the envelopes instead of sending them."""
    if not dsn:
        return False
    import sentry_sdk
    from django.core.exceptions import ImproperlyConfigured
    from sentry_sdk.utils import BadDsn, Dsn

    try:
        Dsn(dsn)
    except BadDsn as error:
        raise ImproperlyConfigured(
            "SENTRY_DSN is not a Sentry DSN (like https://<key>@<host>/<project>, from the project's Client Keys "
            f"page): {error}. Unset it to turn error reporting off."
        ) from None
    if not 0.0 <= traces_sample_rate <= 1.0:
        raise ImproperlyConfigured(
            f"SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1 (it is {traces_sample_rate}); 0 sends errors only."
        )
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    options = {
        "dsn": dsn,
        "environment": environment or None,
        "release": release or None,
        # Collect as little as the SDK can, before the scrubber (`send_default_pii=False`, spelled the way this
        # SDK version wants it: it deprecates that flag for `data_collection`). Headers: the same safe list.
        "data_collection": {
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "allowlist", "terms": sorted(SAFE_HEADERS)}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
        },
        "max_request_body_size": "never",
        "traces_sample_rate": traces_sample_rate,
        "before_send": event_scrub,
        "before_send_transaction": event_scrub,
        "before_breadcrumb": breadcrumb_scrub,
        # transaction names are URL patterns ("/campaigns/<int:pk>/"), not paths; a path names no patient
        # (R-NO-PHI-LEAK keeps PHI out of URLs) but a pattern groups the reports better.
        "integrations": [
            DjangoIntegration(transaction_style="url"),
            CeleryIntegration(),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
    }
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    return True
