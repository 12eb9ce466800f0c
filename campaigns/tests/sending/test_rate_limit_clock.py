"""The shared rate limit counts in the Redis server's seconds, not the worker's (docs/reliability.md, "Time"): a
worker whose clock is ten minutes off still counts in the same second as the others, so together they stay within
SEND_RATE_LIMIT."""
import time

import pytest

from campaigns.sending.transport import RateLimiter


class Waited(Exception):
    pass


def _never_sleep(seconds):
    raise Waited(seconds)


def test_a_worker_ten_minutes_ahead_shares_the_others_second(settings, monkeypatch):
    if not settings.HIPAAMAIL_RATE_LIMIT_REDIS_URL:
        pytest.skip("needs Redis (CELERY_BROKER_URL=redis://...)")
    url = settings.HIPAAMAIL_RATE_LIMIT_REDIS_URL
    on_time = RateLimiter(limit=1000, redis_url=url, sleep=_never_sleep)
    real = time.time
    # From here this process's clock is ten minutes fast: the second worker is made, and asks, on that clock.
    monkeypatch.setattr(time, "time", lambda: real() + 600)
    ahead = RateLimiter(limit=1000, redis_url=url, sleep=_never_sleep)
    for _ in range(5):  # within one Redis second, or try again in the next
        granted, second = on_time.take(1000)
        try:
            ahead.take(1)
        except Waited:
            return  # the second's allowance was spent by the other worker: it waits, as it must
        if int(on_time._redis_time()) == second:
            pytest.fail("a worker with a fast clock took a permit from a second the other had spent")
    pytest.fail("never managed to ask within one second")
