"""A real Celery worker process for tests: pointed at this test's database and the test broker, sending through
Django's SMTP backend to a test SMTP sink (campaigns.tests.smtp_server). Used by the real-worker tests and the
marketer's journey in Chromium."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from celery import current_app as celery_app
from django.conf import settings

from campaigns.models import Campaign

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SEND_TIMEOUT = 60


def database_url_of_this_test() -> str:
    """This test's database (test_<name>), which the worker must use: the data is committed there."""
    db = settings.DATABASES["default"]
    credentials = quote(db.get("USER") or "postgres", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


QUEUES = ("campaigns", "transactional")


def purge_broker() -> None:
    """Drop wake-ups left in the queues by an earlier run; the worker would run them against this database."""
    with celery_app.connection_for_write() as broker:
        channel = broker.default_channel
        for queue in QUEUES:
            channel.queue_purge(queue)


def worker_start(
    sink,
    log,
    *,
    queues: str = "campaigns,transactional",
    name: str = "both",
    extra_env: dict | None = None,
    pool: tuple[str, ...] = ("--concurrency", "1", "-P", "solo"),
    prefix: tuple[str, ...] = (),
    own_group: bool = False,
    celery_config: tuple[str, ...] = (),
) -> subprocess.Popen:
    """A solo worker consuming `queues`, its output to `log`; `extra_env` adds settings (SITE_URL, say). `pool`:
    another pool (prefork children, say); `prefix`: run it under a command (`ip netns exec HOST`, `faketime`); `own_group`: the worker
    leads a process group of its own, so a test can SIGKILL it with its children, as a lost host would lose them.
    `celery_config`: Celery settings for this worker alone, as its command line takes them after `--`
    (`broker_transport_options=(json){"visibility_timeout": 2}`)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EMAIL_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "hipaamail.settings.test",
        "DATABASE_URL": database_url_of_this_test(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": sink.host,
        "EMAIL_PORT": str(sink.port),
        "PYTHONUNBUFFERED": "1",
        # The SMTP server these workers send to records campaign mail, which the tests hold against the database;
        # staff notices ("your campaign was sent") stay in the product here (mailed in campaigns/tests/test_notices.py).
        "NOTICE_EMAIL": "false",
        **(extra_env or {}),
    }
    command = [
        *prefix, sys.executable, "-m", "celery", "-A", "hipaamail", "worker", "-l", "info", "-Q", queues,
        "-n", f"{name}@%h", *pool, "--without-heartbeat", "--without-gossip", "--without-mingle",
        *(("--", *celery_config) if celery_config else ()),
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=own_group
    )


def worker_stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def wait_until_sent(campaign_id: int, worker: subprocess.Popen) -> str:
    deadline = time.monotonic() + SEND_TIMEOUT
    status = ""
    while time.monotonic() < deadline:
        status = Campaign.objects.values_list("status", flat=True).get(pk=campaign_id)
        if status == Campaign.Status.SENT or worker.poll() is not None:
            break
        time.sleep(0.25)
    return status


def worker_kill(worker: subprocess.Popen) -> None:
    """SIGKILL, as the OOM killer or a lost host would: no warm shutdown, no acknowledgement, no rollback sent.
    PostgreSQL sees the connection drop (and rolls the open transaction back); the broker keeps the task
    unacknowledged; what the worker had claimed stays leased until the lease expires."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGKILL)
    worker.wait(10)


def worker_of_connection(workers, local_port: int):
    """Which of `workers` (Popen objects) holds the TCP connection whose local end is 127.0.0.1:`local_port` — the
    sender of a message an SMTP sink is receiving (ReceivedMessage.peer[1]) — or None. Linux only (/proc): the
    connection's socket inode from /proc/net/tcp, then the process whose descriptors include that socket."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                rows = lines.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                inodes.add(f"socket:[{fields[9]}]")
    for worker in workers:
        try:
            descriptors = os.listdir(f"/proc/{worker.pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(f"/proc/{worker.pid}/fd/{descriptor}") in inodes:
                    return worker
            except OSError:
                continue
    return None
