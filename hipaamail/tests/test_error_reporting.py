"""Error reports to Sentry, scrubbed of PHI (R-NO-PHI-LEAK, ADR 0018): real events built by sentry-sdk and its
Django, Celery and logging integrations, captured by a transport of the test's own (no network)."""
import io
import json
from urllib.parse import urlencode

import pytest
import sentry_sdk
from django.core import signals
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from sentry_sdk.transport import Transport

from accounts.tests.factories import staff_make
from observability.errors import SCRUBBED, breadcrumb_scrub, event_scrub, sentry_init

pytestmark = [pytest.mark.django_db, pytest.mark.urls("hipaamail.tests.observability_urls")]

NAME, EMAIL, MRN = "Zelda Quintanilla-Marsh", "zelda.qm@example.org", "MRN-7741203"
LOOKUP = "zq-lookup-5550187"
COOKIE = "zelda-cookie-value-9931"
HEADER = "zelda-header-value-2247"
STAFF_EMAIL = "staffer.confidential@example.org"


class CapturingTransport(Transport):
    def __init__(self):
        super().__init__()
        self.envelopes = []

    def capture_envelope(self, envelope):
        self.envelopes.append(envelope)


@pytest.fixture
def reports():
    transport = CapturingTransport()
    assert sentry_init(dsn="https://public@errors.invalid/1", environment="test", release="r1", transport=transport)
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: reporting off for the rest of the run


def _events(transport) -> list[dict]:
    return [item.payload.json for envelope in transport.envelopes for item in envelope.items if item.type == "event"]


def _wsgi_post(path: str, *, query: str, form: dict, cookies: str, headers: dict) -> tuple[str, dict]:
    """POST through Django's WSGI handler, as gunicorn calls it (the path sentry-sdk's Django integration wraps)."""
    body = urlencode(form).encode()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "testserver",
        "SERVER_PORT": "80", "REMOTE_ADDR": "198.51.100.23", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "testserver",
        "HTTP_COOKIE": cookies, "wsgi.errors": io.StringIO(), "wsgi.multithread": False, "wsgi.multiprocess": False,
        "wsgi.run_once": False, "wsgi.version": (1, 0), **headers,
    }
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(response_headers)

    # As Django's test client does: the test's transaction must outlive the request (no connection closing).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        b"".join(get_wsgi_application()(environ, start_response))
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return answer["status"], answer["headers"]


def test_r_no_phi_leak_a_failing_request_reaches_sentry_without_any_patient_detail(client, reports):
    """R-NO-PHI-LEAK: the view fails with the patient's name, email and record number in its POST body, query
    string, a cookie, a header, its local variables, its log lines (breadcrumb and error event) and the exception's
    text, for a signed-in staff member with an email and a username of their own. None of those strings is anywhere
    in what would be sent, and the reports still say what failed where: the exception's type and stack, the route,
    the request's method and path, the request id."""
    staff = staff_make(role="marketer", email=STAFF_EMAIL)
    client.force_login(staff)
    session = client.cookies["sessionid"].value

    status, headers = _wsgi_post(
        "/observability/fail",
        query=urlencode({"lookup": LOOKUP, "email": EMAIL}),
        form={"full_name": NAME, "email": EMAIL, "external_id": MRN},
        cookies=f"sessionid={session}; patient_hint={COOKIE}",
        headers={"HTTP_X_PATIENT": HEADER, "HTTP_USER_AGENT": f"agent of {NAME}", "HTTP_REFERER": f"/?q={EMAIL}"},
    )

    assert status.startswith("500")
    serialized = b"".join(envelope.serialize() for envelope in reports.envelopes).decode()
    for secret in (NAME, EMAIL, MRN, LOOKUP, COOKIE, HEADER, STAFF_EMAIL, staff.username, session, "Quintanilla",
                   "7741203", "198.51.100.23"):
        assert secret not in serialized
    events = _events(reports)
    failures = [event for event in events if "exception" in event]
    assert failures and {value["value"] for event in failures for value in event["exception"]["values"]} == {SCRUBBED}
    # A log record that became an event of its own keeps its template, never its arguments.
    assert all(event["logentry"] == {"message": "no patient named %s"} for event in events if "logentry" in event)
    failure = failures[0]
    (exception,) = failure["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("ValueError", SCRUBBED)
    assert exception["stacktrace"]["frames"][-1]["function"] == "failing_view"
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])
    request = failure["request"]
    assert (request["method"], request["url"]) == ("POST", "http://testserver/observability/fail")
    assert {name.lower() for name in request["headers"]} == {"content-length", "content-type", "host"}
    assert {key: request[key] for key in request if key not in ("method", "url", "headers")} == {
        key: SCRUBBED for key in request if key not in ("method", "url", "headers")
    }
    assert failure["tags"]["request_id"] == headers["X-Request-ID"]
    assert failure["transaction"] == "/observability/fail"
    assert (failure["environment"], failure["release"]) == ("test", "r1")
    assert "extra" not in failure and "modules" not in failure
    assert failure.get("user", {"id": str(staff.pk)}) == {"id": str(staff.pk)}
    crumbs = failure["breadcrumbs"]["values"]
    assert {"category": "hipaamail.tests.observability", "level": "warning", "type": "log"} in [
        {key: crumb.get(key) for key in ("category", "level", "type")} for crumb in crumbs
    ]
    assert all(set(crumb) <= {"timestamp", "category", "level", "type"} for crumb in crumbs)


def test_r_no_phi_leak_the_scrubber_keeps_only_the_user_id_and_safe_headers():
    """R-NO-PHI-LEAK: an event as an SDK or an integration could build it, every field filled: the user is
    reduced to its id, headers to the safe list, extras, modules and the message's arguments dropped."""
    event = {
        "event_id": "abc",
        "level": "error",
        "user": {"id": 42, "email": EMAIL, "username": NAME, "ip_address": "203.0.113.9"},
        "request": {
            "method": "GET",
            "url": f"https://mail.example.org/consent/patients/?q={EMAIL}",
            "query_string": f"q={EMAIL}",
            "headers": {"Authorization": "Bearer s3cret", "Cookie": f"c={COOKIE}", "X-Request-ID": "req-1",
                        "Referer": f"https://mail.example.org/?q={EMAIL}", "Accept": "text/html"},
        },
        "extra": {"celery-job": {"task_name": "t", "args": [EMAIL], "kwargs": {"mrn": MRN}}},
        "logentry": {"message": "sending to %s", "params": [EMAIL], "formatted": f"sending to {EMAIL}"},
        "message": f"sending to {EMAIL}",
        "modules": {"django": "5.2"},
        "tags": {"celery_task_name": "campaigns.tasks.campaign_dispatch_task", "patient": NAME},
        "contexts": {"trace": {"trace_id": "t", "span_id": "s", "data": {"q": EMAIL}}, "profile": {"x": NAME}},
        "spans": [
            {"span_id": "1", "op": "db", "description": f"SELECT 1 WHERE email = '{EMAIL}'", "data": {"p": MRN}},
            {"span_id": "2", "op": "middleware.django", "description": "RequestIdMiddleware.__call__"},
        ],
        "threads": {"values": [{"id": 1, "stacktrace": {"frames": [{"function": "f", "vars": {"email": EMAIL}}]}}]},
    }

    scrubbed = event_scrub(event)

    assert EMAIL not in json.dumps(scrubbed) and MRN not in json.dumps(scrubbed) and NAME not in json.dumps(scrubbed)
    assert scrubbed["user"] == {"id": "42"}
    assert scrubbed["request"] == {
        "method": "GET",
        "url": "https://mail.example.org/consent/patients/",
        "headers": {"X-Request-ID": "req-1", "Accept": "text/html"},
        "query_string": SCRUBBED,
    }
    assert scrubbed["logentry"] == {"message": "sending to %s"}
    assert scrubbed["tags"] == {"celery_task_name": "campaigns.tasks.campaign_dispatch_task"}
    assert scrubbed["contexts"] == {"trace": {"trace_id": "t", "span_id": "s"}}
    assert scrubbed["spans"] == [{"span_id": "1", "op": "db"},
                                 {"span_id": "2", "op": "middleware.django", "description": "RequestIdMiddleware.__call__"}]
    assert scrubbed["threads"] == {"values": [{"id": 1, "stacktrace": {"frames": [{"function": "f"}]}}]}
    assert "extra" not in scrubbed and "modules" not in scrubbed and "message" not in scrubbed


def test_r_no_phi_leak_breadcrumbs_keep_their_kind_never_their_message_or_data():
    crumb = {"timestamp": "t", "category": "query", "level": "info", "type": "default",
             "message": f"SELECT * FROM patient WHERE email = '{EMAIL}'", "data": {"db.params": [EMAIL]}}
    assert breadcrumb_scrub(crumb) == {"timestamp": "t", "category": "query", "level": "info", "type": "default"}


def test_error_reporting_is_off_without_a_dsn_and_a_bad_dsn_is_refused_in_words():
    assert sentry_init(dsn="") is False
    with pytest.raises(ImproperlyConfigured, match="SENTRY_DSN is not a Sentry DSN"):
        sentry_init(dsn="errors.example.org/1")
    with pytest.raises(ImproperlyConfigured, match="SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1"):
        sentry_init(dsn="https://public@errors.invalid/1", traces_sample_rate=5)
