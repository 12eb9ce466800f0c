"""Many machines, the settings (docs/scaling.md, ADR 0019): the send rate limit is counted in a Redis every worker
shares or the product refuses to start; beat takes celery-redbeat's lock whenever a shared Redis exists; production
connects through psycopg's pool, and the app works through it."""
import json
import os
import subprocess
import sys

import pytest

from campaigns.tests.worker import database_url_of_this_test
from conftest import requires_postgresql
from hipaamail.tests.test_settings import PRODUCTION_ENV, ROOT

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_VARIABLES = ("SHARED_REDIS_URL", "SEND_RATE_LIMIT_REDIS_URL", "CACHE_URL", "BEAT_REDIS_URL", "SEND_RATE_LIMIT")


def _settings_of(env: dict[str, str], names: list[str]) -> subprocess.CompletedProcess:
    """Load the settings `env` names in a fresh interpreter and print the settings `names` as JSON."""
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k not in REDIS_VARIABLES}
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {names!r}}}, default=str))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=120, check=False
    )


def test_production_refuses_a_send_rate_limit_without_a_shared_redis_on_rabbitmq():
    """Production requires CACHE_URL, which is the shared Redis when it is one: here the cache is the database's."""
    env = PRODUCTION_ENV | {"CELERY_BROKER_URL": RABBITMQ, "SEND_RATE_LIMIT": "100", "CACHE_URL": "dbcache://cache"}

    result = _settings_of(env, ["DEBUG"])

    assert result.returncode != 0
    assert (
        "ImproperlyConfigured: SEND_RATE_LIMIT=100 needs a Redis that every worker shares, or each worker would "
        "send that many messages per second on its own: set SHARED_REDIS_URL (or CACHE_URL, or "
        "SEND_RATE_LIMIT_REDIS_URL) to a redis:// URL, or SEND_RATE_LIMIT=0 (docs/scaling.md)."
    ) in result.stderr


def test_any_settings_refuse_a_send_rate_limit_on_rabbitmq_without_a_shared_redis():
    """Not only production: with a network broker there may be many workers, so the test settings refuse too."""
    env = {"DJANGO_SETTINGS_MODULE": "hipaamail.settings.test", "CELERY_BROKER_URL": RABBITMQ, "SEND_RATE_LIMIT": "5"}

    result = _settings_of(env, ["DEBUG"])

    assert result.returncode != 0
    assert "ImproperlyConfigured: SEND_RATE_LIMIT=5 needs a Redis that every worker shares" in result.stderr


def test_the_demo_with_its_single_worker_may_count_the_rate_limit_in_process():
    env = {"DJANGO_SETTINGS_MODULE": "hipaamail.settings.local", "CELERY_BROKER_URL": "", "SEND_RATE_LIMIT": "5"}

    result = _settings_of(env, ["HIPAAMAIL_RATE_LIMIT", "HIPAAMAIL_RATE_LIMIT_REDIS_URL", "CELERY_REDBEAT_REDIS_URL"])

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "HIPAAMAIL_RATE_LIMIT": 5,
        "HIPAAMAIL_RATE_LIMIT_REDIS_URL": "",
        "CELERY_REDBEAT_REDIS_URL": None,  # Celery's own file scheduler: one beat, one machine
    }


def test_production_on_rabbitmq_counts_the_rate_limit_and_keeps_beat_single_in_the_cache_redis():
    env = PRODUCTION_ENV | {
        "CELERY_BROKER_URL": RABBITMQ, "SEND_RATE_LIMIT": "100", "CACHE_URL": "redis://cache.internal:6379/1"
    }  # fmt: skip

    result = _settings_of(env, ["HIPAAMAIL_RATE_LIMIT_REDIS_URL", "CELERY_BEAT_SCHEDULER", "CELERY_REDBEAT_REDIS_URL"])

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "HIPAAMAIL_RATE_LIMIT_REDIS_URL": "redis://cache.internal:6379/1",
        "CELERY_BEAT_SCHEDULER": "redbeat.RedBeatScheduler",
        "CELERY_REDBEAT_REDIS_URL": "redis://cache.internal:6379/1",
    }


def test_a_dedicated_shared_redis_wins_over_the_cache_and_the_broker():
    env = PRODUCTION_ENV | {
        "CACHE_URL": "redis://cache.internal:6379/1", "SHARED_REDIS_URL": "rediss://shared.internal:6380/0"
    }  # fmt: skip

    result = _settings_of(env, ["HIPAAMAIL_RATE_LIMIT_REDIS_URL", "CELERY_REDBEAT_REDIS_URL"])

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "HIPAAMAIL_RATE_LIMIT_REDIS_URL": "rediss://shared.internal:6380/0",
        "CELERY_REDBEAT_REDIS_URL": "rediss://shared.internal:6380/0",
    }


def test_a_shared_redis_url_that_is_not_redis_is_refused_by_name():
    result = _settings_of(PRODUCTION_ENV | {"SHARED_REDIS_URL": "memcache://cache.internal:11211"}, ["DEBUG"])

    assert result.returncode != 0
    assert "ImproperlyConfigured: SHARED_REDIS_URL must be a Redis URL (redis://, rediss:// or unix://)" in result.stderr


def test_media_on_s3_without_a_bucket_is_refused_by_name():
    result = _settings_of(PRODUCTION_ENV | {"MEDIA_STORAGE": "s3"}, ["DEBUG"])

    assert result.returncode != 0
    assert "ImproperlyConfigured: MEDIA_STORAGE=s3 needs MEDIA_S3_BUCKET" in result.stderr


def test_media_on_s3_is_private_and_encrypted_at_rest():
    """R-SEC-ENCRYPT-REST: every object the bucket keeps is encrypted by it; nothing is public."""
    env = PRODUCTION_ENV | {"MEDIA_STORAGE": "s3", "MEDIA_S3_BUCKET": "riverside-media", "MEDIA_S3_REGION": "us-east-2"}

    result = _settings_of(env, ["STORAGES"])

    assert result.returncode == 0, result.stderr
    default = json.loads(result.stdout)["STORAGES"]["default"]
    assert default["BACKEND"] == "storages.backends.s3.S3Storage"
    assert default["OPTIONS"]["bucket_name"] == "riverside-media"
    assert default["OPTIONS"]["region_name"] == "us-east-2"
    assert default["OPTIONS"]["default_acl"] == "private"
    assert default["OPTIONS"]["object_parameters"] == {"ServerSideEncryption": "AES256"}
    assert default["OPTIONS"]["file_overwrite"] is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_POOL_MIN_SIZE": "20", "DATABASE_POOL_MAX_SIZE": "10"}, "DATABASE_POOL_MIN_SIZE (20) must be between"),
        ({"DATABASE_URL": "sqlite:////tmp/x.sqlite3"}, "The connection pool needs PostgreSQL (DATABASE_URL=postgres://…)."),
    ],
)
def test_production_refuses_a_connection_pool_it_cannot_open(env, message):
    result = _settings_of(PRODUCTION_ENV | env, ["DEBUG"])

    assert result.returncode != 0
    assert message in result.stderr


def test_production_turns_the_pool_off_with_a_max_size_of_zero():
    result = _settings_of(PRODUCTION_ENV | {"DATABASE_POOL_MAX_SIZE": "0"}, ["DATABASES"])

    assert result.returncode == 0, result.stderr
    assert "pool" not in json.loads(result.stdout)["DATABASES"]["default"].get("OPTIONS", {})


# What the production settings' connection does: run in a process of its own under hipaamail.settings.production.
POOLED_WORK = """
import json, django, psycopg
django.setup()
from django.db import connection, transaction
from django.contrib.sites.models import Site
from psycopg_pool import ConnectionPool

with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
pool = connection.pool
with transaction.atomic():
    site = Site.objects.select_for_update().get(pk=1)
    # Another session cannot take the row: the lock is real, held by the pooled connection's transaction.
    with psycopg.connect(DSN, autocommit=True) as other:
        try:
            other.execute("SELECT id FROM django_site WHERE id = 1 FOR UPDATE NOWAIT")
            locked = False
        except psycopg.errors.LockNotAvailable:
            locked = True
connection.close()
made = pool.get_stats()["connections_num"]
backends = set()
for _ in range(10):  # ten "requests": each closes its connection, which goes back to the pool
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backends.add(cursor.fetchone()[0])
    connection.close()
print(json.dumps({
    "pooled": isinstance(pool, ConnectionPool), "min_size": pool.min_size, "max_size": pool.max_size,
    "conn_max_age": connection.settings_dict["CONN_MAX_AGE"], "site": site.pk, "row_locked": locked,
    "new_connections_for_ten_requests": pool.get_stats()["connections_num"] - made,
    "at_most_max_size_backends": len(backends) <= pool.max_size,
}))
"""


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_production_settings_connect_through_a_pool_and_the_app_works_through_it():
    """Queries, a transaction and SELECT ... FOR UPDATE through the pool; a connection Django closes goes back to
    the pool and is lent again (the same PostgreSQL backend), so a request or task opens no new connection."""
    env = PRODUCTION_ENV | {
        "DATABASE_URL": database_url_of_this_test(), "DATABASE_POOL_MIN_SIZE": "1", "DATABASE_POOL_MAX_SIZE": "3"
    }  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k not in REDIS_VARIABLES}

    result = subprocess.run(
        [sys.executable, "-c", f"DSN = {database_url_of_this_test()!r}\n{POOLED_WORK}"], cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "pooled": True,
        "min_size": 1,
        "max_size": 3,
        "conn_max_age": 0,
        "site": 1,
        "row_locked": True,
        "new_connections_for_ten_requests": 0,
        "at_most_max_size_backends": True,
    }
