"""Schemathesis against the served schema (/api/v1/openapi.json): every operation, fuzzed with valid and invalid
input by a key holding every scope, on the real database. No answer may be a server error, and every answer must
match the schema: its status documented, its content type, its headers and its body."""
import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.tests.factories import staff_make
from api.keys import api_key_create
from api.scopes import SCOPES

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 30


# The schema as the product serves it, fetched through the WSGI application (no database needed for it).
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())


@pytest.fixture
def _keep_the_test_connection(db):
    # Django closes the database connection after each request; inside a test's transaction that would end the
    # test's data. The test client does the same as this (django.test.client.ClientHandler).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def full_key_token(db):
    admin = staff_make(role="administrator")
    return api_key_create(actor=admin, name="Schemathesis", scopes=list(SCOPES), rate_limit_per_minute=100_000).token


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_within_its_schema(case, _keep_the_test_connection, full_key_token, api_data):
    case.call_and_validate(headers={"Authorization": f"Bearer {full_key_token}"}, checks=CHECKS)


def test_stateful_sequences_follow_the_schemas_links(_keep_the_test_connection, full_key_token, api_data):
    """Schemathesis's stateful run: sequences of calls that follow the OpenAPI links (an upserted patient read back,
    a recorded authorization read as FHIR, a campaign's results from the list), each answer checked as above."""
    import uuid

    links = sum(
        len(response.get("links", {}))
        for operations in schema.raw_schema["paths"].values()
        for operation in operations.values()
        for response in operation["responses"].values()
    )
    assert links >= 5

    class Workflow(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            headers = {"Authorization": f"Bearer {full_key_token}"}
            if case.method == "POST":
                headers["Idempotency-Key"] = uuid.uuid4().hex
            return {"headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS)

    Workflow.run(
        settings=settings(
            max_examples=40,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
