"""Structured logs (docs/operations.md): every line logged while serving a request carries its request id, every
line logged in a Celery task the task's id and name; LOG_FORMAT=json writes one JSON object a line; an
exception's text never reaches the log (R-NO-PHI-LEAK)."""
import io
import json
import logging
import logging.config
import sys

import pytest
from celery import Celery
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from observability.logs import JsonFormatter, LogContextFilter, logging_config

pytestmark = pytest.mark.urls("hipaamail.tests.observability_urls")

task_logger = logging.getLogger("hipaamail.tests.observability.task")


# A Celery app of the test's own: the task runs through Celery's real tracer and signals (task_prerun binds its
# id), and the product's app keeps exactly its frozen task names (hipaamail/tests/test_task_names.py).
test_app = Celery("observability-tests", set_as_current=False)


@test_app.task(name="hipaamail.tests.observability_log_task", shared=False)
def observability_log_task(delivery_id: int) -> None:
    task_logger.info("a line logged in a task for delivery %s", delivery_id)


@pytest.fixture
def json_lines():
    """The project's LOGGING for LOG_FORMAT=json, its console handler writing into a buffer; the test settings'
    own configuration back afterwards."""
    buffer = io.StringIO()
    config = logging_config(log_format="json", level="INFO")
    config["handlers"]["console"]["stream"] = buffer
    logging.config.dictConfig(config)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        logging.config.dictConfig(settings.LOGGING)


@pytest.mark.django_db
def test_a_line_logged_in_a_request_carries_its_request_id(client, json_lines):
    response = client.get("/observability/logs")

    (line,) = [line for line in json_lines() if line["logger"] == "hipaamail.tests.observability"]
    assert line["message"] == "a line logged while serving a request"
    assert line["request_id"] == response["X-Request-ID"] != ""
    assert (line["task_id"], line["task_name"], line["level"]) == ("", "", "INFO")


@pytest.mark.django_db
def test_a_callers_request_id_is_kept_and_a_forged_one_replaced(client, json_lines):
    kept = client.get("/observability/logs", HTTP_X_REQUEST_ID="lb-7f3a.42")
    forged = client.get("/observability/logs", HTTP_X_REQUEST_ID='x"\n{"level": "CRITICAL"}')

    assert kept["X-Request-ID"] == "lb-7f3a.42"
    assert len(forged["X-Request-ID"]) == 36 and "\n" not in forged["X-Request-ID"]
    assert [line["request_id"] for line in json_lines() if line["logger"] == "hipaamail.tests.observability"] == [
        "lb-7f3a.42", forged["X-Request-ID"]
    ]


def test_a_line_logged_in_a_task_carries_the_task_id_and_name(json_lines):
    result = observability_log_task.apply(args=(42,), task_id="5b0c2d1e-task-id-for-the-test")

    assert result.successful()
    (line,) = [line for line in json_lines() if line["logger"] == "hipaamail.tests.observability.task"]
    assert line["message"] == "a line logged in a task for delivery 42"
    assert (line["task_id"], line["task_name"]) == ("5b0c2d1e-task-id-for-the-test", "hipaamail.tests.observability_log_task")
    assert line["request_id"] == ""


def test_after_the_task_its_ids_are_gone_from_later_lines(json_lines):
    observability_log_task.apply(args=(1,), task_id="first-task")
    logging.getLogger("hipaamail.tests.observability").info("after the task")

    (line,) = [line for line in json_lines() if line["message"] == "after the task"]
    assert (line["task_id"], line["task_name"]) == ("", "")


def test_r_no_phi_leak_an_exception_is_logged_by_type_and_stack_never_its_text():
    """R-NO-PHI-LEAK: a ValidationError quotes the value it refused; the JSON line names the type and the frames."""
    address = "zelda.qm@example.org"  # a value, as a form would have it: the stack shows source lines, not values
    try:
        raise ValueError(f"Enter a valid email address: {address}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "import failed", None, sys.exc_info())
    LogContextFilter().filter(record)

    line = JsonFormatter().format(record)

    assert "zelda.qm@example.org" not in line
    parsed = json.loads(line)
    assert parsed["exception"] == "builtins.ValueError"
    assert "test_r_no_phi_leak_an_exception_is_logged_by_type_and_stack_never_its_text" in parsed["stack"]


def test_r_no_phi_leak_celerys_task_failure_line_names_the_exception_type_only():
    """R-NO-PHI-LEAK: Celery logs a failed task as "raised unexpected: %(exc)s" with the exception's repr, its
    arguments and its traceback text beside it (and again in `record.data`); the filter leaves the exception's
    type, the task's name and id."""
    address = "zelda.qm@example.org"
    try:
        raise ValueError(f"no patient {address}")
    except ValueError as error:
        context = {"hostname": "w1", "id": "i", "name": "t", "exc": repr(error), "traceback": f"ValueError: {address}",
                   "args": "['MRN-1']", "kwargs": "{}", "description": "raised unexpected"}
        record = logging.LogRecord("celery.app.trace", logging.ERROR, __file__, 1,
                                   "Task %(name)s[%(id)s] %(description)s: %(exc)s", None, sys.exc_info())
    record.args, record.data = context, context
    LogContextFilter().filter(record)

    assert record.getMessage() == "Task t[i] raised unexpected: ValueError"
    assert record.data == {"id": "i", "name": "t", "hostname": "w1", "description": "raised unexpected"}
    assert address not in JsonFormatter().format(record)


def test_log_format_accepts_json_or_plain_and_names_them_otherwise():
    assert logging_config(log_format="plain", level="INFO")["handlers"]["console"]["formatter"] == "plain"
    with pytest.raises(ImproperlyConfigured, match=r"LOG_FORMAT must be one of json, plain \(it is 'xml'\)"):
        logging_config(log_format="xml", level="INFO")
