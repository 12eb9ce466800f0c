"""gunicorn's settings for the web process (Procfile's `web`; gunicorn reads this file from the working directory).

Environment: PORT (default 8000) and HOST (default 0.0.0.0) to bind, WEB_CONCURRENCY worker processes (default 3),
FORWARDED_ALLOW_IPS, the proxies whose X-Forwarded-Proto gunicorn believes (default loopback only: put the address
of your TLS-terminating proxy or load balancer there), and GUNICORN_CMD_ARGS for anything else, such as
`--certfile cert.pem --keyfile key.pem` to serve HTTPS without a proxy (the production smoke test does).
"""
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
# Sync workers: the views are synchronous and short; a PDF export is the longest, well within the timeout.
timeout = 60
graceful_timeout = 30
# A worker is replaced after this many requests, so a slow leak never grows without bound. Not fewer: at 200
# requests a second (bench/public_endpoints.py) 2,000 recycled each of three workers every 30 s, and a worker's
# boot (Django loaded again, 2 to 3 s of CPU) held up every page, /health/live's p95 included, for seconds.
max_requests = 50000
max_requests_jitter = 5000
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# The access log names the path without its query string (%(U)s, R-NO-PHI-LEAK), the status, the size, the time in
# milliseconds and the request id the application answered with (hipaamail.middleware.RequestIdMiddleware).
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'
errorlog = "-"


def child_exit(server, worker):
    """Prometheus's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, docs/operations.md): a web worker that exits takes
    its live gauges with it, or /metrics would keep reporting them."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
