"""The health endpoints (hipaamail/health.py, ADR 0017): liveness asks nothing; readiness checks the database, the
cache, the broker and a worker on each queue, each shown up and down by stopping the thing or pointing at a closed
port. Both are public and say nothing but which check is down (R-NO-PHI-LEAK: no host, no version, no error text)."""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import current_app as celery_app
from django.db import connections

from campaigns.tests.worker import purge_broker, worker_start, worker_stop
from conftest import requires_postgresql, requires_redis
from hipaamail import health

pytestmark = pytest.mark.django_db

ALL_UP = {
    "database": "ok",
    "cache": "ok",
    "broker": "ok",
    "workers:campaigns": "ok",
    "workers:transactional": "ok",
}
READY_WITHIN = 4.0  # seconds: a probe answers well within a load balancer's usual 5 s, whatever is down


def _closed_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ready(client):
    started = time.monotonic()
    response = client.get("/health/ready")
    return response, json.loads(response.content), time.monotonic() - started


def _assert_says_nothing_more(response, *, secrets: tuple[str, ...]) -> None:
    body = response.content.decode()
    for secret in ("127.0.0.1", "localhost", "Error", "Traceback", "redis", "postgres", "celery@", *secrets):
        assert secret not in body
    assert "no-cache" in response["Cache-Control"]
    assert "Set-Cookie" not in response.headers


def test_liveness_answers_without_sign_in_and_without_asking_any_dependency(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health/live")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"status": "ok"}
    _assert_says_nothing_more(response, secrets=())


def test_the_health_endpoints_are_public_in_the_url_declarations():
    """Deny by default: the two probes are the visible exceptions, marked public(...) in hipaamail/urls.py."""
    from django.urls import resolve

    from accounts.access import PUBLIC, access_level

    assert access_level(resolve("/health/live").func) == PUBLIC
    assert access_level(resolve("/health/ready").func) == PUBLIC
    assert health.worker_queues() == ["campaigns", "transactional"]


def test_liveness_refuses_anything_but_get(client):
    assert client.post("/health/live").status_code == 405


# --- readiness, against a real worker (Redis) -----------------------------------------------------------------


class Workers:
    """The module's worker: one solo worker consuming both queues, which a test may stop and start again."""

    def __init__(self, log_path):
        self.log_path = log_path
        self.process = None

    def start(self, queues: str = "campaigns,transactional") -> None:
        self.log = open(self.log_path, "ab")
        self.process = worker_start(SimpleNamespace(host="127.0.0.1", port=_closed_port()), self.log, queues=queues,
                                    name=f"health-{queues.replace(',', '-')}")  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # Asked as the probe asks (never through the app's pool: the fork test below needs it unused).
            if set(queues.split(",")) <= health.worker_queues_answering(timeout=0.5):
                return
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
        raise AssertionError(f"the worker did not answer within 60 s: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None:
            worker_stop(self.process)
            self.log.close()
            self.process = None
        # A stopped worker stops answering pings at once; wait until no worker of ours is left listed.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and health.worker_queues_answering(timeout=0.3):
            time.sleep(0.2)


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker, tmp_path_factory):
    if not celery_app.conf.broker_url.startswith("redis://"):
        pytest.skip("needs Redis (set CELERY_BROKER_URL)")
    with django_db_blocker.unblock():
        purge_broker()
        running = Workers(tmp_path_factory.mktemp("health") / "worker.log")
        running.start()
        yield running
        running.stop()


@requires_redis
@pytest.mark.worker
def test_readiness_is_200_when_the_database_cache_broker_and_a_worker_on_each_queue_answer(client, workers):
    response, body, seconds = _ready(client)

    assert response.status_code == 200
    assert body == {"status": "ok", "checks": ALL_UP}
    assert seconds < READY_WITHIN
    _assert_says_nothing_more(response, secrets=())


@requires_redis
@pytest.mark.worker
def test_readiness_is_503_naming_the_database_when_it_is_down(client, workers, monkeypatch):
    # The check opens its own connection in another thread, from the shared settings: a closed port there.
    port = str(_closed_port())
    monkeypatch.setitem(connections["default"].settings_dict, "PORT", port)

    response, body, seconds = _ready(client)

    assert response.status_code == 503
    assert body == {"status": "unavailable", "failed": ["database"], "checks": ALL_UP | {"database": "unavailable"}}
    assert seconds < READY_WITHIN
    _assert_says_nothing_more(response, secrets=(port,))


@requires_redis
@pytest.mark.worker
def test_readiness_is_503_naming_the_cache_when_it_is_down(client, workers, settings):
    port = str(_closed_port())
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{port}/0"}}  # fmt: skip

    response, body, seconds = _ready(client)

    assert response.status_code == 503
    assert body == {"status": "unavailable", "failed": ["cache"], "checks": ALL_UP | {"cache": "unavailable"}}
    assert seconds < READY_WITHIN
    _assert_says_nothing_more(response, secrets=(port,))


@requires_redis
@pytest.mark.worker
def test_readiness_is_503_naming_the_broker_when_it_refuses_connections(client, workers, monkeypatch):
    # The broker and worker checks connect afresh with the app's broker URL, which Celery reads from
    # CELERY_BROKER_URL first: a closed port. With the broker away no worker can be asked either.
    port = str(_closed_port())
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{port}/0")

    response, body, seconds = _ready(client)

    down = ["broker", "workers:campaigns", "workers:transactional"]
    assert response.status_code == 503
    assert body == {"status": "unavailable", "failed": down, "checks": ALL_UP | dict.fromkeys(down, "unavailable")}
    assert seconds < READY_WITHIN
    _assert_says_nothing_more(response, secrets=(port,))


@requires_redis
@pytest.mark.worker
def test_readiness_names_each_queue_left_without_a_worker(client, workers):
    workers.stop()
    try:
        workers.start(queues="campaigns")
        one_queue, one_body, _ = _ready(client)
        workers.stop()
        none, none_body, seconds = _ready(client)
    finally:
        workers.stop()
        workers.start()

    assert one_queue.status_code == 503
    assert one_body == {
        "status": "unavailable",
        "failed": ["workers:transactional"],
        "checks": ALL_UP | {"workers:transactional": "unavailable"},
    }
    assert none.status_code == 503
    assert none_body == {
        "status": "unavailable",
        "failed": ["workers:campaigns", "workers:transactional"],
        "checks": ALL_UP | {"workers:campaigns": "unavailable", "workers:transactional": "unavailable"},
    }
    assert seconds < READY_WITHIN
    _assert_says_nothing_more(none, secrets=("health-",))


@requires_redis
@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_process_that_probed_readiness_still_forks_the_audit_chain_s_parallel_walk(client, monkeypatch):
    """The probe leaves no thread and no pooled broker connection behind: a process that forks afterwards (the
    audit chain's parallel walk, audit.selectors) gets its children's results instead of hanging."""
    from audit import selectors
    from audit.services import audit_record, audit_seal

    monkeypatch.setattr(selectors, "PARALLEL_MIN_EVENTS", 1)
    threads_before = sorted(thread.name for thread in threading.enumerate())
    client.get("/health/ready")
    for n in range(20):
        audit_record(actor=None, actor_role="system", action="fhir.imported", details={"ids": [n]})
    audit_seal()

    walked = selectors.audit_chain_walk(workers=2)

    assert sorted(thread.name for thread in threading.enumerate()) == threads_before
    assert walked.first_break is None


# --- readiness in the zero-service demo (make run: SQLite, kombu's filesystem broker, which workers poll) ---------

ROOT = Path(__file__).resolve().parents[2]
# Asked from a process of the demo's own (its settings, its broker folder), through the URL, as curl asks it.
DEMO_PROBE = """
import json
import django
django.setup()
from django.test import Client
response = Client(HTTP_HOST="localhost").get("/health/ready")
print(json.dumps({"status": response.status_code, "body": json.loads(response.content)}))
"""


def _demo_env(var_dir) -> dict[str, str]:
    """scripts/run-demo's environment, its var/ folder a temporary one."""
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    return env | {
        "DJANGO_SETTINGS_MODULE": "hipaamail.settings.local",
        "HIPAAMAIL_VAR_DIR": str(var_dir),
        "PYTHONUNBUFFERED": "1",
    }


def _demo_worker_commands() -> dict[str, list[str]]:
    """The workers scripts/run-demo starts (`start NAME .venv/bin/celery ... worker ...`), with this venv's celery."""
    commands = {}
    for line in (ROOT / "scripts" / "run-demo").read_text().splitlines():
        match = re.match(r"start (\w+) \.venv/bin/celery (.* worker .*)$", line.strip())
        if match:
            commands[match[1]] = [str(Path(sys.executable).parent / "celery"), *shlex.split(match[2])]
    return commands


def _demo_ready(env) -> tuple[int, dict]:
    result = subprocess.run([sys.executable, "-c", DEMO_PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return answer["status"], answer["body"]


def _demo_worker_stop(worker: subprocess.Popen) -> None:
    """TERM to the worker's process group (its prefork children too), KILL after a grace period."""
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)


@pytest.mark.worker
def test_the_demo_s_readiness_is_200_while_its_workers_run_and_names_the_queue_whose_worker_was_killed(tmp_path):
    """make run's /health/ready: the filesystem broker is polled (by the worker for the ping, by the probe for the
    answer), so an answer takes up to two polling intervals; the probe waits for that, and so is 200 while the demo's
    workers run, and 503 naming the campaigns queue once its worker is gone while the other still answers."""
    env = _demo_env(tmp_path)
    commands = _demo_worker_commands()
    assert sorted(commands) == ["mailer", "worker"]
    logs, workers = {}, {}
    try:
        for name, command in commands.items():
            logs[name] = tmp_path / f"{name}.log"
            with open(logs[name], "wb") as log:
                workers[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                 start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while not all(" ready." in log.read_text() for log in logs.values()):
            for name, worker in workers.items():
                assert worker.poll() is None, logs[name].read_text()[-3000:]
            assert time.monotonic() < deadline, {name: log.read_text()[-1500:] for name, log in logs.items()}
            time.sleep(0.2)

        # A worker logs "ready." a moment before it first polls the broker: ask a few times before calling it down.
        for _ in range(5):
            up_status, up_body = _demo_ready(env)
            if up_status == 200:
                break
        _demo_worker_stop(workers["worker"])  # the campaigns worker
        down_status, down_body = _demo_ready(env)
    finally:
        for worker in workers.values():
            _demo_worker_stop(worker)

    assert (up_status, up_body) == (200, {"status": "ok", "checks": ALL_UP})
    assert (down_status, down_body) == (
        503,
        {"status": "unavailable", "failed": ["workers:campaigns"], "checks": ALL_UP | {"workers:campaigns": "unavailable"}},
    )
