"""API keys reach only their scopes; expired and revoked keys are refused; errors are problem+json; a retried POST
with the same Idempotency-Key creates once; a key over its rate limit gets 429 with Retry-After."""
from datetime import timedelta

import pytest
from django.utils import timezone

from api.keys import api_key_revoke
from api.models import ApiKey
from api.scopes import PURPOSES_READ, RESULTS_READ
from audit import actions
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def test_schema_and_docs_are_served(client):
    schema = client.get("/api/v1/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    assert "/api/v1/purposes" in schema.json()["paths"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html and "cdn" not in html.lower()


def test_no_key_unknown_key_and_malformed_key_answer_401_problem(client):
    for headers in ({}, {"Authorization": "Bearer hm_deadbeef_nope"}, {"Authorization": "Bearer nonsense"}):
        response = client.get("/api/v1/purposes", headers=headers)
        assert response.status_code == 401
        assert response["Content-Type"] == PROBLEM
        assert response.json()["code"] == "unauthenticated"


def test_a_key_reaches_only_its_scopes(api_client):
    api = api_client([PURPOSES_READ])
    assert api.get("/api/v1/purposes").status_code == 200
    refused = api.get("/api/v1/campaigns")
    assert refused.status_code == 403
    assert refused.json()["code"] == "scope_missing"
    assert api_client([RESULTS_READ]).get("/api/v1/purposes").status_code == 403


def test_revoked_and_expired_keys_are_refused(api_client, admin_user):
    api = api_client([PURPOSES_READ])
    assert api.get("/api/v1/purposes").status_code == 200
    api_key_revoke(actor=admin_user, api_key_id=api.key.pk)
    assert api.get("/api/v1/purposes").status_code == 401

    expiring = api_client([PURPOSES_READ], expires_at=timezone.now() + timedelta(hours=1))
    assert expiring.get("/api/v1/purposes").status_code == 200
    ApiKey.objects.filter(pk=expiring.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert expiring.get("/api/v1/purposes").status_code == 401


def test_r_sec_audit_every_call_is_audited_with_the_key_and_no_phi(api_client):
    """R-SEC-AUDIT, R-NO-PHI-LEAK: one api.called event per call naming the key; method, operation and status only."""
    api = api_client([PURPOSES_READ])
    api.get("/api/v1/purposes")
    event = AuditEvent.objects.filter(action=actions.API_CALLED).latest("id")
    assert event.actor_role == f"api_key:{api.key.pk}"
    assert event.object_id == str(api.key.pk)
    assert event.details == {"method": "GET", "operation": "purpose_list", "status": 200}


def test_rate_limit_answers_429_with_retry_after(api_client):
    api = api_client([PURPOSES_READ], rate_limit_per_minute=3)
    codes = [api.get("/api/v1/purposes").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = api.get("/api/v1/purposes")
    assert limited["Content-Type"] == PROBLEM
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 61


def test_a_key_never_reaches_the_staff_pages(api_client):
    api = api_client()
    response = api.get("/consent/patients/")
    assert response.status_code == 302  # the sign-in page: a key is not a session


def test_a_post_to_a_path_without_a_post_operation_gets_405_not_an_idempotency_problem(api_client):
    response = api_client().post("/api/v1/purposes", {}, idempotency_key=None)
    assert response.status_code == 405


def test_a_post_without_an_idempotency_key_is_refused_before_anything_runs(api_client):
    response = api_client().post("/api/v1/events", {"event_id": "1"}, idempotency_key=None)
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_missing"


def test_a_body_over_the_api_limit_is_a_413_problem_and_one_under_djangos_limit_is_read(api_client, settings):
    from api import middleware

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000  # the API reads its bodies against its own limit, not this one
    api = api_client()
    big = b'{"event_id": "' + b"x" * 5000 + b'"}'
    assert api.post("/api/v1/events", raw=big).status_code == 422  # read and validated, not refused as too big
    old = middleware.API_MAX_BODY_BYTES
    middleware.API_MAX_BODY_BYTES = 4000
    try:
        refused = api.post("/api/v1/events", raw=big)
    finally:
        middleware.API_MAX_BODY_BYTES = old
    assert refused.status_code == 413 and refused["Content-Type"] == "application/problem+json"
    assert refused.json()["code"] == "body_too_large"
