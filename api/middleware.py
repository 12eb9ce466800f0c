"""Around every call of the integration API: the Idempotency-Key of a POST, and one audit event per call.

Idempotency (IETF draft "The Idempotency-Key HTTP Header Field"): the first POST with a key runs and its answer is
kept for IDEMPOTENCY_TTL; the same key with the same request gets that answer again (`Idempotent-Replayed: true`)
and nothing runs twice; the same key with another request is refused (422 `idempotency_key_reused`); while the
first is still running a second answers 409 `idempotency_in_progress`. A record left "running" by a process that
died is taken over after IN_PROGRESS_STALE. Answers that say nothing about the request (401, 403, 429, 5xx) are not
kept, so a retry after them runs."""
from __future__ import annotations

import functools
import hashlib
import re
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone, translation

from api.keys import api_key_for_token
from api.models import IdempotencyRecord
from api.problems import problem_response
from audit import actions
from audit import context as audit_context
from audit.services import audit_record
from consent import crypto

API_PREFIX = "/api/v1/"
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL = timedelta(hours=24)
IN_PROGRESS_STALE = timedelta(seconds=120)
_NOT_KEPT = {401, 403, 409, 429}
# The largest body a call may send: a batch of 1,000 patients is about 0.5 MB, an authorization's evidence (a scan
# of up to 10 MB) about 13.4 MB in base64. Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) stays the limit of every
# other page; the API reads its own bodies against this one and answers 413 as a problem.
API_MAX_BODY_BYTES = 15 * 1024 * 1024


@functools.cache
def _post_paths() -> re.Pattern:
    """The paths that have a POST operation (from the API's routers): only those need an Idempotency-Key; a POST
    elsewhere gets the API's own 405 or 404."""
    from api.main import api

    patterns = []
    for prefix, router in api._routers:
        for path, path_view in router.path_operations.items():
            if any("POST" in operation.methods for operation in path_view.operations):
                full = API_PREFIX + (prefix.strip("/") + "/" + path.lstrip("/")).strip("/")
                patterns.append(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(full)))
    return re.compile("^(?:" + "|".join(patterns) + ")/?$")


def idempotency_records_prune() -> int:
    """Delete the answers kept longer than IDEMPOTENCY_TTL; returns how many."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - IDEMPOTENCY_TTL).delete()
    return deleted


def _bearer_key(request):
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return api_key_for_token(token.strip())


def _request_hash(request) -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.META.get("QUERY_STRING", "")):
        digest.update(part.encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    digest.update(request.body)
    return digest.hexdigest()


class ApiMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        # The API is read by programs and documented in English (ADR 0030): its labels and problem details do not
        # follow a client's Accept-Language, so the same call always answers the same words.
        with translation.override("en"):
            return self._api_call(request)

    def _api_call(self, request):
        too_large = self._body_read(request)
        if too_large is not None:
            return too_large
        key = None
        if request.method == "POST" and _post_paths().match(request.path):
            key = _bearer_key(request)
            if key is not None:
                audit_context.api_key_bind(key.pk)
                response = self._idempotent(request, key)
            else:
                response = self.get_response(request)  # the operation answers 401
        else:
            response = self.get_response(request)
        key = key or getattr(request, "api_key", None)
        if key is not None:
            self._audit(request, key, response)
        response.setdefault("Cache-Control", "no-store")
        return response

    def _body_read(self, request) -> HttpResponse | None:
        """Read the body under the API's own limit (before anything reads it under Django's smaller one)."""
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > API_MAX_BODY_BYTES:
            return problem_response(
                413, "body_too_large", "The request body is too large",
                f"A call may send at most {API_MAX_BODY_BYTES // (1024 * 1024)} MB; split a batch into smaller ones.",
            )
        request._body = request.read(API_MAX_BODY_BYTES + 1) if length else b""
        if len(request._body) > API_MAX_BODY_BYTES:
            return problem_response(413, "body_too_large", "The request body is too large")
        return None

    def _idempotent(self, request, key) -> HttpResponse:
        name = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        if not name or len(name) > 255:
            return problem_response(
                400, "idempotency_key_missing", "An Idempotency-Key header is needed",
                "Every POST carries a unique Idempotency-Key (1 to 255 characters), reused only to retry it.",
            )
        request_hash = _request_hash(request)
        now = timezone.now()
        IdempotencyRecord.objects.filter(api_key=key, key=name, created_at__lt=now - IDEMPOTENCY_TTL).delete()
        IdempotencyRecord.objects.filter(
            api_key=key, key=name, status_code__isnull=True, created_at__lt=now - IN_PROGRESS_STALE
        ).delete()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(api_key=key, key=name, request_hash=request_hash)
        except IntegrityError:
            return self._replay(key=key, name=name, request_hash=request_hash)
        request.idempotency_replayed = False
        try:
            response = self.get_response(request)
        except BaseException:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            raise
        if response.status_code >= 500 or response.status_code in _NOT_KEPT or response.streaming:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            return response
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            status_code=response.status_code,
            content_type=response.get("Content-Type", "")[:100],
            body=crypto.encrypt(response.content.decode("utf-8")),
        )
        return response

    def _replay(self, *, key, name: str, request_hash: str) -> HttpResponse:
        record = IdempotencyRecord.objects.filter(api_key=key, key=name).first()
        if record is None or record.status_code is None:
            return problem_response(
                409, "idempotency_in_progress", "The first request with this Idempotency-Key is still running",
                "Retry in a moment; it will get the first request's answer.", headers={"Retry-After": "1"},
            )
        if record.request_hash != request_hash:
            return problem_response(
                422, "idempotency_key_reused", "This Idempotency-Key was used for another request",
                "Use a new key for a new request; reuse a key only to retry the same request.",
            )
        response = HttpResponse(
            crypto.decrypt(record.body), status=record.status_code, content_type=record.content_type or None
        )
        response["Idempotent-Replayed"] = "true"
        return response

    def _audit(self, request, key, response) -> None:
        match = getattr(request, "resolver_match", None)
        details = {
            "method": request.method,
            "operation": (match.url_name if match else "") or "unknown",
            "status": response.status_code,
        }
        if response.get("Idempotent-Replayed"):
            details["replayed"] = True
        audit_record(
            actor=None, action=actions.API_CALLED, object_type="api_key", object_id=key.pk, details=details
        )
