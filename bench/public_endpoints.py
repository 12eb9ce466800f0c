#!/usr/bin/env python
"""Benchmark (issue 16, item 3): the pages anyone can reach, under 200 requests per second from a loopback client,
on the production-like server (gunicorn, hipaamail.settings.production, PostgreSQL, Redis as the cache).

    .venv/bin/python bench/public_endpoints.py [--rate 200] [--seconds 30] [--runs 3]
    BENCH_ADMIN_URL=postgres://postgres@db:5432/postgres BENCH_REDIS_URL=redis://127.0.0.1:6379/14 \
        .venv/bin/python bench/public_endpoints.py

It (re)creates the database `hipaamail_bench_public` (`--database`), flushes the Redis database BENCH_REDIS_URL
(default redis://127.0.0.1:6379/14; the cache and the broker of the run, nothing else may use it), makes the
production environment's secrets for the run (.env.example's recipes), migrates and collects the static files with
the production settings, and makes through the real services a marketing purpose with a published form, 300
patients who signed it and a launched campaign (300 queued deliveries: their unsubscribe links are valid). Then
it starts gunicorn as the Procfile's `web` does (gunicorn.conf.py, WEB_CONCURRENCY=3 sync workers) on a free
loopback port, plain HTTP with `X-Forwarded-Proto: https` as the TLS proxy of docs/deployment.md sends it, and
the throttles at their defaults.

Each run holds `--rate` requests per second for `--seconds` against each endpoint in turn, open loop (a request
starts at its scheduled instant whether or not earlier ones have answered; at most 2,000 in flight), one new
connection per request (gunicorn's sync workers close each):

- `GET /unsubscribe/<valid>/` and `POST` of it (the 300 valid links in turn: the first POST of each revokes,
  later ones find it done), `GET` and `POST /unsubscribe/<n>:forged<n>/` (a new forged link every request),
- `POST /my/sign-in/` (the portal's code request; a CSRF cookie and token fetched once; one address in 20 a
  patient's), `GET /health/live`.

Before each endpoint the throttles' counters are deleted from the cache, so each starts as a fresh client would.
It prints, per endpoint: latency p50/p95/p99 and max measured from each request's scheduled start (so a server
that falls behind shows it), the rate of answers achieved, the answers by status (429: throttled), and how many
audit rows the endpoint added while it ran. After both forged-link endpoints it waits for the minute to end and
flushes as beat does every minute (campaigns.services.unsubscribe), and checks that the `unsubscribe.bad_tokens`
rows written count every forged request. Then the median and spread (min-max) over the runs, with the load average. Record them in docs/benchmarks.md.
"""
import argparse
import asyncio
import base64
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "hipaamail_bench_public"
HOST = "clinic.localhost"
PATIENTS = 300
MAX_IN_FLIGHT = 2000

sys.path.insert(0, str(ROOT))
from bench.api_patients_upsert import free_port, recreate_database  # noqa: E402 (the other server benchmark's)


def production_env(*, database_url: str, redis_url: str, port: int, var_dir: Path) -> dict:
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return {
        "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
        "HOME": str(var_dir),
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "hipaamail.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": HOST,
        "SITE_URL": f"https://{HOST}",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "CACHE_URL": redis_url,
        "FIELD_ENCRYPTION_KEYS": f"k1:{key}",
        "IDENTIFIER_HASH_KEY": secrets.token_urlsafe(32),
        "AUDIT_CHECKPOINT_KEYS": secrets.token_urlsafe(48),
        "DEFAULT_FROM_EMAIL": "Riverside Health <news@riverside-health.org>",
        "EMAIL_HOST": "localhost",
        "HIPAAMAIL_VAR_DIR": str(var_dir),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "3",
    }


def seed() -> list[int]:
    """A purpose with a published form, PATIENTS patients who signed it, a launched campaign: the delivery ids."""
    from campaigns.models import Delivery
    from campaigns.services.launch import campaign_launch
    from campaigns.tests.factories import campaign_approved_make
    from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

    purpose = purpose_make(name="CPAP supplies")
    form_published_make(purpose)
    for n in range(PATIENTS):
        authorization_make(patient=patient_make(email=f"bench.patient.{n}@example.org"), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    return list(Delivery.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True))


# --- the loopback client: raw HTTP/1.1 over asyncio, one connection per request ----------------------------------


async def request_once(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


def http_request(method: str, path: str, *, headers: dict | None = None, body: bytes = b"") -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {HOST}",
        "X-Forwarded-Proto: https",
        "Connection: close",
        "User-Agent: hipaamail-bench",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def hold_rate(port: int, requests, *, rate: float, seconds: float) -> dict:
    """Send requests(i) at t0 + i / rate for `seconds`; latency from each scheduled start to the whole answer."""
    total = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2

    async def one(index: int) -> None:
        nonlocal errors
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        async with in_flight:
            try:
                status, _ = await asyncio.wait_for(request_once(port, requests(index)), timeout=60)
            except (TimeoutError, OSError):
                errors += 1
                return
        latencies.append(loop.time() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(index) for index in range(total)))
    elapsed = loop.time() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "max": latencies[-1] * 1000 if latencies else 0,
        "rate": len(latencies) / elapsed, "statuses": statuses, "errors": errors, "sent": total,
    }


def csrf_for_sign_in(port: int) -> tuple[str, str]:
    """The CSRF cookie and the form's token, fetched once (as a browser would on its first visit)."""
    _, data = asyncio.run(request_once(port, http_request("GET", "/my/sign-in/")))
    head, _, page = data.partition(b"\r\n\r\n")
    cookie = re.search(rb"csrftoken=([^;]+)", head).group(1).decode()
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    return cookie, token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    args = parser.parse_args()

    import redis

    store = redis.Redis.from_url(args.redis_url)
    store.flushdb()
    var_dir = Path(tempfile.mkdtemp(prefix="hipaamail-bench-public-"))
    port = free_port()
    env = production_env(
        database_url=recreate_database(args.admin_url, args.database), redis_url=args.redis_url, port=port,
        var_dir=var_dir,
    )
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.WARNING)
    import django

    django.setup()
    from django.db import connection

    from audit.models import AuditEvent
    from campaigns.sending.messages import unsubscribe_token
    from campaigns.services.unsubscribe import unsubscribe_bad_tokens_flush

    deliveries = seed()
    tokens = [unsubscribe_token(pk) for pk in deliveries]
    connection.close()

    log = open(var_dir / "gunicorn.log", "wb")
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "hipaamail.wsgi:application"], cwd=ROOT, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if asyncio.run(request_once(port, http_request("GET", "/health/live")))[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"gunicorn did not answer: {(var_dir / 'gunicorn.log').read_text()[-2000:]}")
            time.sleep(0.3)
        cookie, csrf = csrf_for_sign_in(port)
        sign_in_headers = {
            "Cookie": f"csrftoken={cookie}",
            "Referer": f"https://{HOST}/my/sign-in/",
            "Origin": f"https://{HOST}",
            "Content-Type": "application/x-www-form-urlencoded",
        }

        def sign_in_body(index: int) -> bytes:
            # One address in 20 is a patient's (a code is queued for them); the others are nobody's.
            email = f"bench.patient.{index % PATIENTS}@example.org" if index % 20 == 0 else f"nobody{index}@example.org"
            return f"csrfmiddlewaretoken={csrf}&email={quote(email)}".encode()

        one_click = {"Content-Type": "application/x-www-form-urlencoded"}
        endpoints = {
            "unsubscribe GET, valid link": lambda i: http_request("GET", f"/unsubscribe/{tokens[i % len(tokens)]}/"),
            "unsubscribe POST, valid link": lambda i: http_request(
                "POST", f"/unsubscribe/{tokens[i % len(tokens)]}/", headers=one_click,
                body=b"List-Unsubscribe=One-Click",
            ),
            "unsubscribe GET, forged link": lambda i: http_request("GET", f"/unsubscribe/{i}:forged{i}/"),
            "unsubscribe POST, forged link": lambda i: http_request(
                "POST", f"/unsubscribe/{i}:forged{i}/", headers=one_click, body=b"List-Unsubscribe=One-Click"
            ),
            "portal sign-in POST": lambda i: http_request(
                "POST", "/my/sign-in/", headers=sign_in_headers, body=sign_in_body(i)
            ),
            "health/live GET": lambda i: http_request("GET", "/health/live"),
        }
        print(
            f"{args.rate:.0f} requests/s for {args.seconds:.0f} s per endpoint, {args.runs} runs; gunicorn pid "
            f"{server.pid} (3 sync workers) on 127.0.0.1:{port}; {os.cpu_count()} CPUs; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        )
        results: dict[str, list[dict]] = {name: [] for name in endpoints}
        forged_phases = [name for name in endpoints if "forged" in name]
        forged_summary: list[tuple[int, int, int, int]] = []
        for run in range(1, args.runs + 1):
            for name, requests in endpoints.items():
                for key in store.scan_iter(match="*hipaamail:throttle:*", count=1000):
                    store.delete(key)
                before = AuditEvent.objects.count()
                if name == forged_phases[0]:
                    forged_after_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
                load_before = os.getloadavg()[0]
                result = asyncio.run(hold_rate(port, requests, rate=args.rate, seconds=args.seconds))
                result["audit_rows"] = AuditEvent.objects.count() - before
                result["load"] = (load_before, os.getloadavg()[0])
                connection.close()
                results[name].append(result)
                statuses = ", ".join(f"{status}: {count}" for status, count in sorted(result["statuses"].items()))
                errors = f"  errors {result['errors']}" if result["errors"] else ""
                print(
                    f"run {run} {name:30} p50 {result['p50']:7.1f}  p95 {result['p95']:7.1f}  p99 "
                    f"{result['p99']:7.1f}  max {result['max']:7.1f} ms   {result['rate']:6.1f}/s   [{statuses}]"
                    f"{errors}   audit +{result['audit_rows']}"
                    f"   load {result['load'][0]:.2f}->{result['load'][1]:.2f}"
                )
                if name == forged_phases[-1]:
                    # The forged links' counts are written once their interval has ended (and its grace): wait for
                    # that, then flush as beat does every minute, and check the rows count every forged request.
                    interval = 60
                    time.sleep(interval - time.time() % interval + 6)
                    unsubscribe_bad_tokens_flush()
                    rows = list(AuditEvent.objects.filter(id__gt=forged_after_id, action="unsubscribe.bad_tokens"))
                    others = AuditEvent.objects.filter(id__gt=forged_after_id).exclude(action="unsubscribe.bad_tokens")
                    forged = sum(sum(results[phase][-1]["statuses"].values()) for phase in forged_phases)
                    counted = sum(row.details["count"] for row in rows)
                    total_rows = len(rows) + others.count()
                    print(
                        f"run {run} forged links: {forged} requests answered; audit rows for them {total_rows} "
                        f"({len(rows)} unsubscribe.bad_tokens, one per minute, counting {counted}; "
                        f"{others.count()} others)"
                    )
                    forged_summary.append((forged, total_rows, len(rows), counted))
                    connection.close()
        print()
        for name, runs in results.items():

            def spread(field: str, fmt: str = "{:.1f}", runs=runs) -> str:
                values = [run[field] for run in runs]
                return (
                    f"{fmt.format(statistics.median(values))} "
                    f"({fmt.format(min(values))}-{fmt.format(max(values))})"
                )

            throttled = [run["statuses"].get(429, 0) for run in runs]
            print(
                f"{name:30} p50 {spread('p50')}  p95 {spread('p95')}  p99 {spread('p99')} ms   rate "
                f"{spread('rate')}/s   429s {statistics.median(throttled):.0f} ({min(throttled)}-{max(throttled)})"
                f"   audit rows {spread('audit_rows', '{:.0f}')}"
            )
        for run, (forged, total_rows, rows, counted) in enumerate(forged_summary, 1):
            print(
                f"forged links, run {run}: {forged} answered, {total_rows} audit rows "
                f"({rows} unsubscribe.bad_tokens counting {counted})"
            )
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
