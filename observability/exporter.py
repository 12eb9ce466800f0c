"""A Celery worker's own metrics endpoint (ADR 0018): the worker's main process serves, on METRICS_WORKER_PORT,
the samples of every process writing to this host's PROMETHEUS_MULTIPROC_DIR (its prefork children among them),
behind the same bearer token as /metrics. Queue depths are not served here: the web's /metrics reads them.

Off unless both METRICS_WORKER_PORT and METRICS_TOKEN are set: a port that answered anyone would be the
endpoint the web denies by default."""
import logging
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST

from observability.metrics import metrics_render
from observability.views import bearer_token_matches

logger = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # wsgiref writes every request to stderr otherwise
        pass


def exporter_app(*, token: str):
    def app(environ, start_response):
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b""]
        if not bearer_token_matches(authorization=environ.get("HTTP_AUTHORIZATION", ""), token=token):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="metrics"')])
            return [b""]
        body = metrics_render(scrape_time=False)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]

    return app


def worker_exporter_start(*, address: str, port: int, token: str) -> WSGIServer | None:
    """Serve in a daemon thread; None (and a warning) when the port is taken, by another worker of this host that
    shares its PROMETHEUS_MULTIPROC_DIR and so serves the same samples."""
    try:
        server = make_server(address, port, exporter_app(token=token), handler_class=_QuietHandler)
    except OSError as error:
        logger.warning("metrics: worker exporter not started on port %s (%s)", port, type(error).__name__)
        return None
    threading.Thread(target=server.serve_forever, name="metrics-exporter", daemon=True).start()
    logger.info("metrics: worker exporter on port %s", server.server_port)
    return server
