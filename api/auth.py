"""Who is calling: the bearer token's key, the scope the operation needs, and the key's rate limit.

Each operation declares `auth=KeyAuth(<scope>)`. A missing, unknown, revoked or expired key answers 401 (all
alike); a key without the scope answers 403; a key over its limit answers 429 with Retry-After. The key is then
bound to the request's audit context, so every event a service records during the call names it."""
from __future__ import annotations

import time

from django.core.cache import cache
from ninja.security import HttpBearer

from api.keys import api_key_for_token
from api.models import ApiKey
from api.problems import ApiProblem
from api.scopes import SCOPES
from audit import context as audit_context

RATE_WINDOW_SECONDS = 60


class KeyAuth(HttpBearer):
    openapi_description = "An API key created by an administrator: `Authorization: Bearer hm_<prefix>_<secret>`."

    def __init__(self, scope: str):
        if scope not in SCOPES:
            raise ValueError(f"{scope!r} is not a scope (api.scopes)")
        self.scope = scope
        super().__init__()

    def authenticate(self, request, token: str) -> ApiKey | None:
        key = api_key_for_token(token)
        if key is None:
            return None
        request.api_key = key
        audit_context.api_key_bind(key.pk)
        if self.scope not in key.scopes:
            raise ApiProblem(403, "scope_missing", "This key may not do this", f"It needs the {self.scope} scope.")
        rate_limit_check(key)
        return key


def rate_limit_check(key: ApiKey) -> None:
    """A fixed window per key per minute in the cache (Redis in production, shared by every web process)."""
    now = time.time()
    window = int(now // RATE_WINDOW_SECONDS)
    name = f"api-rate:{key.pk}:{window}"
    cache.add(name, 0, timeout=RATE_WINDOW_SECONDS * 2)
    try:
        used = cache.incr(name)
    except ValueError:  # expired between add and incr
        cache.add(name, 1, timeout=RATE_WINDOW_SECONDS * 2)
        used = 1
    if used > key.rate_limit_per_minute:
        retry_after = max(1, int((window + 1) * RATE_WINDOW_SECONDS - now) + 1)
        raise ApiProblem(
            429,
            "rate_limited",
            "Too many calls",
            f"This key may make {key.rate_limit_per_minute} calls a minute; retry after {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
