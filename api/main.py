"""The integration API, version 1: one NinjaAPI, its routers, and the answers for every error.

The schema (`/api/v1/openapi.json`) is generated from the operations' type annotations, so the schema and the
validation cannot drift apart (ADR 0014); the docs page renders it with Swagger UI from our own static files."""
from __future__ import annotations

import logging

from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from api.problems import PROBLEM_CONTENT_TYPE, ApiProblem, from_problem, from_validation, problem_response
from api.routers import authorizations, events, patients, purposes, results
from audit.exceptions import NotFound

logger = logging.getLogger(__name__)

DESCRIPTION = """\
The integration API of hipaamail: for EHR, CRM and practice-management systems.

* **Keys.** An administrator creates a key with the scopes a system needs (Integrations in the staff menu) and
  sends it as `Authorization: Bearer hm_<prefix>_<secret>`.
* **Idempotency.** Every POST carries an `Idempotency-Key` header (any unique string up to 255 characters). A
  retry with the same key and body gets the first answer again (`Idempotent-Replayed: true`); the same key with
  another body is refused (`idempotency_key_reused`).
* **Errors** are `application/problem+json` (RFC 9457) with a stable `code`; they name fields, never the values
  sent.
* **Pages**: lists answer `{"items": [...], "next_cursor": "..."}`; pass `cursor` to get the next page.
* **No PHI in URLs**: patients are found by a POSTed search or by their opaque id.
"""


# OpenAPI links (what one answer lets a client call next): documentation for integrators, and the paths
# Schemathesis's stateful run follows (api/tests/test_schemathesis.py). (path, method, status) -> link name ->
# (target operationId, {target parameter: runtime expression}).
LINKS = {
    ("/api/v1/patients/upsert", "post", "200"): {
        "GetPatient": ("patient_get", {"path.patient_id": "$response.body#/items/0/patient_id"}),
        "ListAuthorizations": ("authorization_list", {"query.patient_id": "$response.body#/items/0/patient_id"}),
        "ListEvents": ("event_list", {"query.patient_id": "$response.body#/items/0/patient_id"}),
    },
    ("/api/v1/authorizations", "post", "201"): {
        "GetAuthorization": ("authorization_get", {"path.authorization_id": "$response.body#/id"}),
        "GetAuthorizationFhir": ("authorization_fhir", {"path.authorization_id": "$response.body#/id"}),
        "GetPatientBundle": ("authorization_fhir_bundle", {"query.patient_id": "$response.body#/patient_id"}),
    },
    ("/api/v1/authorizations", "get", "200"): {
        "GetFirstAuthorization": ("authorization_get", {"path.authorization_id": "$response.body#/items/0/id"}),
    },
    ("/api/v1/events", "post", "201"): {
        "ListPatientEvents": ("event_list", {"query.patient_id": "$response.body#/patient_id"}),
    },
    ("/api/v1/campaigns", "get", "200"): {
        "GetCampaignResults": ("campaign_results", {"path.campaign_id": "$response.body#/items/0/id"}),
    },
}


class HipaamailApi(NinjaAPI):
    def get_openapi_operation_id(self, operation) -> str:
        # The function's name: unique across the routers (<entity>_<verb>), and readable in clients and links.
        return operation.view_func.__name__

    def get_openapi_schema(self, *args, **kwargs):
        schema = super().get_openapi_schema(*args, **kwargs)
        operation_ids = {
            operation["operationId"] for operations in schema.get("paths", {}).values() for operation in operations.values()
        }
        for (path, method, status), links in LINKS.items():
            response = schema.get("paths", {}).get(path, {}).get(method, {}).get("responses", {}).get(int(status))
            if response is None:
                response = schema.get("paths", {}).get(path, {}).get(method, {}).get("responses", {}).get(status)
            if response is None:
                continue
            response["links"] = {
                name: {"operationId": target, "parameters": parameters}
                for name, (target, parameters) in links.items()
                if target in operation_ids
            }
        # Error answers are problem+json (RFC 9457), not plain JSON: say so, or clients and Schemathesis would
        # expect application/json.
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in (operation.get("responses") or {}).items():
                    content = response.get("content") or {}
                    if int(status) >= 400 and "application/json" in content:
                        content[PROBLEM_CONTENT_TYPE] = content.pop("application/json")
            post = operations.get("post")
            if post is not None:
                # Enforced by api.middleware.ApiMiddleware before the operation runs.
                post.setdefault("parameters", []).append(
                    {
                        "in": "header",
                        "name": "Idempotency-Key",
                        "required": True,
                        "description": "A unique key for this request; send the same key only to retry it.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                )
        return schema


api = HipaamailApi(
    title="hipaamail integration API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api-v1",
)


@api.exception_handler(ApiProblem)
def _problem(request, exc: ApiProblem):
    return from_problem(exc)


@api.exception_handler(ValidationError)
def _validation(request, exc: ValidationError):
    return from_validation(exc.errors)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return problem_response(
        401, "unauthenticated", "A valid API key is needed",
        "Send `Authorization: Bearer <key>`; the key may be unknown, revoked or expired.",
        headers={"WWW-Authenticate": 'Bearer realm="hipaamail"'},
    )


@api.exception_handler(NotFound)
def _not_found(request, exc):
    return problem_response(404, "not_found", "Not found", "Nothing with this id, or not reachable with this key.")


@api.exception_handler(Http404)
def _http404(request, exc):
    return problem_response(404, "not_found", "Not found", "Nothing with this id, or not reachable with this key.")


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return problem_response(exc.status_code, "http_error", str(exc)[:200])


@api.exception_handler(Exception)
def _unexpected(request, exc: Exception):
    # Never a stack trace, never the exception's message (a database error may quote the values it refused).
    logger.error("api: unexpected %s in %s", type(exc).__name__, request.path)
    return problem_response(500, "internal_error", "Something went wrong on our side", "It has been logged.")


api.add_router("/patients", patients.router)
api.add_router("/purposes", purposes.router)
api.add_router("/authorizations", authorizations.router)
api.add_router("/events", events.router)
api.add_router("/", results.router)
