"""Throttling of the pages anyone can reach: staff sign-in, the patient portal's code requests and code entry, the
signing pages and one-click unsubscribe. Each scope has rules in settings.HIPAAMAIL_THROTTLES, allauth's syntax
("20/m/ip,10/15m/key": at most 20 a minute from one client address and 10 in 15 minutes for one account), counted
in the Django cache, so in production (Redis, CACHE_URL) the count is global across processes and hosts.

A request over a rule gets 429 with `Retry-After` and a page in plain words (templates/throttled.html). The
counters are fixed windows (an atomic add-and-increment per rule, no lock), so a client can get at most twice a
rule's amount through across a window's boundary; the cache holds keyed digests only, never an address, an email
or a token (R-NO-PHI-LEAK). The client address is allauth's (ALLAUTH_TRUSTED_PROXY_COUNT, TRUSTED_PROXY_COUNT in
the environment), so both throttles agree behind a proxy; IPv6 addresses count per /64 as allauth's do.

allauth keeps its own limits beside these (ACCOUNT_RATE_LIMITS: failed sign-ins per address and account, password
resets); when one of them answers 429, `allauth_throttled` (handler429 in hipaamail.urls) gives the same page.
"""
import hashlib
import hmac
import ipaddress
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import ngettext

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PER = ("ip", "key")


@dataclass(frozen=True)
class Rule:
    amount: int
    seconds: int
    per: str  # "ip": the client address; "key": the account (or the address digest, the token) the caller names


def throttle_rules_parse(text: str) -> tuple[Rule, ...]:
    """"20/m/ip,10/15m/key" -> its rules; "" -> none (the scope is not throttled). ValueError saying what is wrong
    for anything else, so a mistyped setting stops the start instead of silently throttling nothing."""
    rules = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        pieces = part.split("/")
        if len(pieces) != 3:
            raise ValueError(f"{part!r} is not a rule: write amount/period/ip or amount/period/key, e.g. 20/m/ip.")
        amount, period, per = pieces
        count, unit = period[:-1] or "1", period[-1:]
        if not amount.isdigit() or int(amount) < 1 or not count.isdigit() or int(count) < 1 or unit not in _UNITS:
            raise ValueError(
                f"{part!r} is not a rule: the amount is a whole number and the period a number of s, m, h or d "
                "(20/m/ip, 10/15m/key)."
            )
        if per not in _PER:
            raise ValueError(f"{part!r} is not a rule: it counts per ip or per key, not per {per!r}.")
        rules.append(Rule(amount=int(amount), seconds=int(count) * _UNITS[unit], per=per))
    return tuple(rules)


def throttle_settings_check(throttles: dict[str, str]) -> None:
    """Called by the settings: every scope's rules parse, or ImproperlyConfigured naming the variable."""
    for scope, text in throttles.items():
        try:
            throttle_rules_parse(text)
        except ValueError as error:
            raise ImproperlyConfigured(f"THROTTLE_{scope.upper()}: {error}") from None


def _rules(scope: str) -> tuple[Rule, ...]:
    if not getattr(settings, "HIPAAMAIL_THROTTLE_ENABLED", True):
        return ()
    return throttle_rules_parse(settings.HIPAAMAIL_THROTTLES[scope])


def _digest(value: str) -> str:
    """A keyed digest: the cache never holds an address, an email or a token, and nobody can precompute keys."""
    return hmac.new(f"throttle:{settings.SECRET_KEY}".encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def throttle_subject(value: str) -> str:
    """The keyed digest a caller may keep (in a session, say) to name an account later without holding it."""
    return f"subject:{_digest(value)}"


def client_ip(request: HttpRequest) -> str:
    """The client's own address, exactly, as allauth sees it behind ALLAUTH_TRUSTED_PROXY_COUNT proxies (the
    documented proxy makes REMOTE_ADDR 127.0.0.1 for everyone): what the audit trail and a signature's evidence
    record. "" when allauth cannot tell (fewer forwarded addresses than trusted proxies)."""
    from allauth.account.adapter import get_adapter

    try:
        return get_adapter().get_client_ip(request) or ""
    except PermissionDenied:
        return ""


def client_address(request: HttpRequest) -> str:
    """The client's address for counting (`client_ip`), an IPv6 address as its /64 (one host usually holds a
    whole /64)."""
    address = client_ip(request)
    if not address:  # allauth could not tell: count them together rather than not at all
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False).network_address)
    return address


def cache_counters_add(entries: list[tuple[str, int]]) -> list[int]:
    """Add one to each counter (its cache key, its timeout in seconds), creating it with that timeout: the new
    values. Atomic per counter. On Redis (production's cache) one round trip for all of them, through the cache's own
    client (a SET NX EX and an INCR each, pipelined); on any other cache, add then incr."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        keys = [backend.make_and_validate_key(key) for key, _ in entries]
        pipeline = backend._cache.get_client(keys[0], write=True).pipeline(transaction=False)
        for key, (_, timeout) in zip(keys, entries):
            pipeline.set(key, 0, ex=timeout, nx=True)
            pipeline.incr(key)
        return [int(value) for value in pipeline.execute()[1::2]]
    values = []
    for key, timeout in entries:
        backend.add(key, 0, timeout=timeout)
        try:
            values.append(backend.incr(key))
        except ValueError:  # expired between add and incr
            backend.add(key, 1, timeout=timeout)
            values.append(1)
    return values


def throttle_hit(request: HttpRequest, *, scope: str, key: str | None = None) -> int | None:
    """Count this request against the scope's rules. None when it may go on, else the seconds until it may.

    `key` names the account the request is about (a staff member's email, the address a code was asked for, a
    patient, a token); rules per key are skipped without one. Every rule counts, even once one is over, so a
    flood stays refused until its window ends."""
    now = time.time()
    counted = []
    for index, rule in enumerate(_rules(scope)):
        if rule.per == "key":
            if key is None:
                continue
            subject = _digest(f"key:{key}")
        else:
            subject = _digest(f"ip:{client_address(request)}")
        window = int(now // rule.seconds)
        counted.append((rule, window, f"hipaamail:throttle:{scope}:{index}:{subject}:{window}"))
    if not counted:
        return None
    counts = cache_counters_add([(cache_key, rule.seconds + 5) for rule, _, cache_key in counted])
    wait = 0
    for (rule, window, _), count in zip(counted, counts):
        if count > rule.amount:
            wait = max(wait, math.ceil((window + 1) * rule.seconds - now))
            if count == rule.amount + 1:  # once a window, never the address or the key
                logger.warning("throttled", extra={"throttle_scope": scope, "throttle_per": rule.per})
    return max(wait, 1) if wait else None


def throttled_response(request: HttpRequest, *, retry_after: int) -> HttpResponse:
    """429 with Retry-After and a page that says, in plain words, how long to wait."""
    minutes = math.ceil(retry_after / 60)
    response = render(
        request,
        "throttled.html",
        {"wait": (
            ngettext("%(count)s second", "%(count)s seconds", retry_after) % {"count": retry_after}
            if retry_after < 60
            else ngettext("%(count)s minute", "%(count)s minutes", minutes) % {"count": minutes}
        )},
        status=429,
    )
    response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response


def throttle_check(request: HttpRequest, *, scope: str, key: str | None = None) -> HttpResponse | None:
    """For a view: the 429 response when this request is over a rule of `scope`, else None (go on)."""
    wait = throttle_hit(request, scope=scope, key=key)
    return None if wait is None else throttled_response(request, retry_after=wait)


# allauth's own limits (ACCOUNT_RATE_LIMITS) by the page they guard: allauth's 429 does not say which rule refused,
# so Retry-After is the longest window of that action's rules (an upper bound, never too short).
_ALLAUTH_ACTIONS = {
    "account_login": "login",
    "account_reset_password": "reset_password",
    "account_reset_password_from_key": "reset_password_from_key",
    "account_reauthenticate": "reauthenticate",
    "account_change_password": "change_password",
    "account_email": "manage_email",
}


def allauth_throttled(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """handler429 (hipaamail.urls): the page allauth shows when one of its own limits refuses a request."""
    from allauth.account import app_settings

    match = getattr(request, "resolver_match", None)
    action = _ALLAUTH_ACTIONS.get(match.url_name if match else "", "")
    rates = (app_settings.RATE_LIMITS or {}).get(action) or ""
    seconds = [rule.seconds for rule in _allauth_rules(rates)]
    return throttled_response(request, retry_after=max(seconds, default=60))


def _allauth_rules(text: str) -> tuple[Rule, ...]:
    # allauth allows "10/m" (per ip) and the "user" kind; only the windows matter here.
    rules = []
    for part in (piece.strip() for piece in text.split(",") if piece.strip()):
        pieces = part.split("/")
        if len(pieces) == 2:
            pieces.append("ip")
        try:
            rules.extend(throttle_rules_parse("/".join([*pieces[:2], "ip"])))
        except ValueError:
            continue
    return tuple(rules)
