"""Beat runs once however many hosts start it (docs/scaling.md, ADR 0019): two real `celery beat` processes against
the same Redis; only the one holding celery-redbeat's lock sends the schedule's tasks; killed (SIGKILL: no lock
released), the other takes over within the lock's lease.

The schedule is the product's own: JOURNEY_SCAN_SECONDS=1 makes "journeys-advance" due every second, so counting the
"Sending due task journeys-advance" lines of each beat's log counts what each one scheduled. Nothing consumes the
queues of the broker database these beats publish to; they are emptied afterwards. Marked `multihost` (make test-multihost)."""
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from conftest import requires_redis

pytestmark = [pytest.mark.multihost, requires_redis]

ROOT = Path(__file__).resolve().parents[2]
SHARED_REDIS = "redis://127.0.0.1:6379/6"
BROKER = "redis://127.0.0.1:6379/7"
LOCK_SECONDS = 5  # BEAT_LOCK_SECONDS: the lease; the leader renews it every tick (at most 1 s apart here)
SENDING = re.compile(r"Sending due task journeys-advance")


def _beat_start(log_path: Path, prefix: str) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "SHARED_", "BEAT_"))}
    env |= {
        "DJANGO_SETTINGS_MODULE": "hipaamail.settings.test",
        "CELERY_BROKER_URL": BROKER,
        "SHARED_REDIS_URL": SHARED_REDIS,
        "BEAT_KEY_PREFIX": prefix,
        "BEAT_LOCK_SECONDS": str(LOCK_SECONDS),
        "JOURNEY_SCAN_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "celery", "-A", "hipaamail", "beat", "-l", "info", "--pidfile="]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _sent(log_path: Path) -> int:
    return len(SENDING.findall(log_path.read_text(errors="replace")))


def _wait_for(condition, what: str, timeout: float) -> float:
    """Poll until `condition()`; returns the seconds it took, or fails naming `what`."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - began


def _kill(beat: subprocess.Popen) -> None:
    if beat.poll() is None:
        os.killpg(beat.pid, signal.SIGKILL)
    beat.wait(10)


def test_two_beats_schedule_once_and_the_standby_takes_over_within_the_lease(tmp_path, capsys):
    prefix = f"hipaamail-test-{uuid.uuid4().hex[:8]}"
    first_log, second_log = tmp_path / "beat-1.log", tmp_path / "beat-2.log"
    first = _beat_start(first_log, prefix)
    second = None
    try:
        _wait_for(lambda: "Acquired lock" in first_log.read_text(errors="replace"), "the first beat's lock", 60)
        second = _beat_start(second_log, prefix)
        _wait_for(lambda: "beat: Starting" in second_log.read_text(errors="replace"), "the second beat to start", 60)
        time.sleep(6)  # both running: six due times

        # Only the leader schedules; the standby waits on the lock.
        led, stood_by = _sent(first_log), _sent(second_log)
        assert led >= 4, first_log.read_text()
        assert stood_by == 0, second_log.read_text()
        assert "Acquired lock" not in second_log.read_text()

        # The leader dies without releasing the lock: the standby takes it once the lease has run out.
        _kill(first)
        killed_after = _sent(first_log)
        took_over_in = _wait_for(
            lambda: "Acquired lock" in second_log.read_text(errors="replace"), "the standby to take over", 30
        )
        assert took_over_in <= LOCK_SECONDS + 2, f"took {took_over_in:.1f} s"
        _wait_for(lambda: _sent(second_log) >= 3, "the new leader to schedule", 10)
        assert _sent(first_log) == killed_after  # a dead beat sends nothing
        with capsys.disabled():
            print(f"\nbeat: the leader had sent {led}, the standby {stood_by}; after SIGKILL the standby took the "
                  f"lock in {took_over_in:.1f} s (lease {LOCK_SECONDS} s)")
    finally:
        _kill(first)
        if second is not None:
            _kill(second)
        client = redis.Redis.from_url(SHARED_REDIS)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        redis.Redis.from_url(BROKER).delete("campaigns", "transactional")  # what the beats published (lists)
