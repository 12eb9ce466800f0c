"""Errors as RFC 9457 problem details (`application/problem+json`), each with a stable `code` an integrator can
branch on. Messages name the field and what is wrong, never the value sent (it may be PHI)."""
from __future__ import annotations

import json
import logging

from django.http import HttpResponse
from ninja import Schema

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://hipaamail.example/problems/"


class FieldError(Schema):
    field: str
    code: str
    message: str


class Problem(Schema):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    code: str
    detail: str = ""
    errors: list[FieldError] = []


class ApiProblem(Exception):
    """Raise anywhere in an operation to answer with a problem."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str = "",
        *,
        errors: list[dict] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(code)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.errors = errors or []
        self.headers = headers or {}


def problem_response(
    status: int, code: str, title: str, detail: str = "", *, errors=None, headers=None
) -> HttpResponse:
    body = {"type": TYPE_BASE + code, "title": title, "status": status, "code": code, "detail": detail}
    body["errors"] = list(errors or [])
    response = HttpResponse(json.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def from_problem(problem: ApiProblem) -> HttpResponse:
    return problem_response(
        problem.status, problem.code, problem.title, problem.detail, errors=problem.errors, headers=problem.headers
    )


def _location(loc) -> str:
    # ninja's locations start with where the value came from ("body", "query", ...), then the path in it.
    parts = [str(part) for part in loc if part not in ("body", "payload")]
    return ".".join(parts) or "body"


def from_validation(errors: list[dict]) -> HttpResponse:
    """Pydantic's errors, reduced to field, a code and a message that never repeats the input."""
    fields = []
    for error in errors[:100]:
        kind = str(error.get("type", "invalid"))
        fields.append(
            {
                "field": _location(error.get("loc", ())),
                "code": kind.replace("-", "_"),
                "message": _message(kind, error),
            }
        )
    return problem_response(
        422, "validation_failed", "The request is not valid", "See `errors`: each names a field and a code.",
        errors=fields,
    )


def _message(kind: str, error: dict) -> str:
    # Pydantic's own message ("Input should be ...") never quotes the input; its "input" and "ctx" are dropped.
    message = str(error.get("msg", "is not valid"))
    return message[:200]


# Every problem an operation may answer with, for the schema (`response=` of each operation).
ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 422, 429)


def error_responses(*extra: int) -> dict:
    return {status: Problem for status in (*ERROR_STATUSES, *extra)}
