"""Throttling of the pages anyone can reach (issue 16, abuse resistance): rules in allauth's syntax counted in the
Django cache, 429 with Retry-After and a plain page, per client address and per account; staff sign-in here, the
portal and unsubscribe in their apps' tests. R-NO-PHI-LEAK: the cache and the page hold no address or email."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from accounts.tests.factories import PASSWORD, staff_make
from accounts.throttle import Rule, cache_counters_add, throttle_hit, throttle_rules_parse, throttle_settings_check
from conftest import requires_redis

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


@pytest.fixture
def throttling(settings, monkeypatch):
    """Throttling on (the suite's settings turn it off) with an empty cache, before and after, and its clock held a
    second into a window (1,800,000,000 is a multiple of every window here), so no window ends mid-test."""
    settings.HIPAAMAIL_THROTTLE_ENABLED = True
    monkeypatch.setattr("accounts.throttle.time.time", lambda: 1_800_000_001.0)
    cache.clear()
    yield settings
    cache.clear()


def _sign_in(client, email, password="wrong-password", address="198.51.100.7"):
    return client.post(LOGIN, {"login": email, "password": password}, REMOTE_ADDR=address)


def test_rules_parse_allauth_syntax():
    assert throttle_rules_parse("20/m/ip, 10/15m/key") == (Rule(20, 60, "ip"), Rule(10, 900, "key"))
    assert throttle_rules_parse("5/h/ip,1/300s/key,2/d/ip") == (
        Rule(5, 3600, "ip"), Rule(1, 300, "key"), Rule(2, 86400, "ip")
    )
    assert throttle_rules_parse("") == ()


@pytest.mark.parametrize(
    ("text", "says"),
    [("20/m", "amount/period/ip"), ("x/m/ip", "whole number"), ("5/w/ip", "s, m, h or d"), ("5/m/user", "per ip")],
)
def test_a_mistyped_rule_stops_the_start_naming_its_variable(text, says):
    with pytest.raises(ImproperlyConfigured) as error:
        throttle_settings_check({"staff_sign_in": text})

    assert "THROTTLE_STAFF_SIGN_IN" in str(error.value) and says in str(error.value)


def test_staff_sign_in_is_throttled_per_account_with_retry_after(client, throttling):
    """Every attempt on one account counts, from any address: the 4th in the window gets 429 with Retry-After."""
    throttling.HIPAAMAIL_THROTTLES = {**throttling.HIPAAMAIL_THROTTLES, "staff_sign_in": "100/m/ip,3/15m/key"}
    staff = staff_make(email="nurse.jones@riverside-health.example")

    answers = [_sign_in(client, staff.email, address=f"198.51.100.{n}") for n in range(1, 5)]
    other_account = _sign_in(client, "someone.else@riverside-health.example", address="198.51.100.9")

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert refused["Retry-After"] == "899"
    page = refused.content.decode()
    assert "Please wait 15 minutes, then try again." in page
    assert "staff_sign_in" not in page and "15m" not in page  # plain words, no rule ids
    assert staff.email not in page
    assert other_account.status_code == 200  # another account is not refused
    # Even the right password waits for the window: the thief and the owner are told the same.
    assert _sign_in(client, staff.email, password=PASSWORD, address="198.51.100.10").status_code == 429


def test_staff_sign_in_is_throttled_per_address(client, throttling):
    throttling.HIPAAMAIL_THROTTLES = {**throttling.HIPAAMAIL_THROTTLES, "staff_sign_in": "2/m/ip,100/15m/key"}

    answers = [_sign_in(client, f"guess{n}@riverside-health.example") for n in range(3)]
    elsewhere = _sign_in(client, "guess9@riverside-health.example", address="203.0.113.5")

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[-1]["Retry-After"] == "59"
    assert "Please wait 59 seconds, then try again." in answers[-1].content.decode()
    assert answers[-1]["Cache-Control"] == "no-store"
    assert elsewhere.status_code == 200


def test_a_correct_sign_in_under_the_limits_goes_through(client, throttling):
    staff = staff_make(with_totp=True)

    response = _sign_in(client, staff.email, password=PASSWORD)

    assert response.status_code == 302


def test_allauths_own_limit_answers_with_the_same_page_and_retry_after(client, throttling):
    """allauth's "login" limit (ACCOUNT_RATE_LIMITS, every sign-in POST per address) goes through handler429."""
    throttling.ACCOUNT_RATE_LIMITS = {"login": "2/m/ip"}

    answers = [client.post(LOGIN, {"login": "", "password": ""}, REMOTE_ADDR="192.0.2.1") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[-1]["Retry-After"] == "60"
    assert "Please wait" in answers[-1].content.decode()


def test_the_cache_holds_no_address_or_email(throttling):
    """R-NO-PHI-LEAK: the counters are named by keyed digests."""
    request = RequestFactory().post(LOGIN, REMOTE_ADDR="198.51.100.77")

    throttle_hit(request, scope="staff_sign_in", key="staff:ana.lopez@example.org")

    keys = list(cache._cache.keys())  # locmem: the suite's cache
    assert len(keys) == 2
    assert not any("198.51.100.77" in key or "ana.lopez" in key or "example.org" in key for key in keys)


def test_ipv6_addresses_count_per_64(throttling):
    throttling.HIPAAMAIL_THROTTLES = {**throttling.HIPAAMAIL_THROTTLES, "staff_sign_in": "1/m/ip"}
    factory = RequestFactory()

    first = throttle_hit(factory.post(LOGIN, REMOTE_ADDR="2001:db8:1:2::10"), scope="staff_sign_in")
    same_64 = throttle_hit(factory.post(LOGIN, REMOTE_ADDR="2001:db8:1:2:ffff::1"), scope="staff_sign_in")
    other_64 = throttle_hit(factory.post(LOGIN, REMOTE_ADDR="2001:db8:1:3::10"), scope="staff_sign_in")

    assert first is None and same_64 is not None and other_64 is None


def test_behind_a_trusted_proxy_the_forwarded_address_counts(throttling):
    """TRUSTED_PROXY_COUNT (ALLAUTH_TRUSTED_PROXY_COUNT): behind the proxy every request comes from 127.0.0.1."""
    throttling.HIPAAMAIL_THROTTLES = {**throttling.HIPAAMAIL_THROTTLES, "staff_sign_in": "1/m/ip"}
    throttling.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    factory = RequestFactory()

    def hit(client_address):
        request = factory.post(LOGIN, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=client_address)
        return throttle_hit(request, scope="staff_sign_in")

    assert hit("198.51.100.1") is None
    assert hit("198.51.100.2") is None  # another client behind the same proxy
    assert hit("198.51.100.1") is not None


def test_throttling_off_counts_nothing(settings):
    settings.HIPAAMAIL_THROTTLE_ENABLED = False
    cache.clear()
    request = RequestFactory().post(LOGIN, REMOTE_ADDR="198.51.100.7")

    assert [throttle_hit(request, scope="staff_sign_in", key="staff:x") for _ in range(50)] == [None] * 50
    assert not list(cache._cache.keys())


@requires_redis
def test_on_redis_counters_are_exact_under_concurrency_and_expire(settings):
    """Production's cache (Redis): one pipelined round trip per request, atomic, so eight threads hitting the same
    counters lose no count; each counter carries its timeout."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": settings.CELERY_BROKER_URL}
    }
    cache.clear()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: cache_counters_add([("t:a", 60), ("t:b", 90)]), range(400)))

        assert sorted(a for a, _ in results) == list(range(1, 401))
        assert sorted(b for _, b in results) == list(range(1, 401))
        assert cache.get("t:a") == 400  # the cache API reads what the pipeline wrote
        client = cache._cache.get_client(write=False)
        assert 0 < client.ttl(cache.make_and_validate_key("t:b")) <= 90
    finally:
        cache.clear()


@requires_redis
def test_on_redis_staff_sign_in_is_refused_with_retry_after(client, throttling):
    throttling.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": throttling.CELERY_BROKER_URL}
    }
    throttling.HIPAAMAIL_THROTTLES = {**throttling.HIPAAMAIL_THROTTLES, "staff_sign_in": "2/m/ip,100/15m/key"}
    cache.clear()
    try:
        answers = [_sign_in(client, f"guess{n}@riverside-health.example") for n in range(3)]

        assert [answer.status_code for answer in answers] == [200, 200, 429]
        assert answers[-1]["Retry-After"] == "59"
    finally:
        cache.clear()
