"""GET /metrics for Prometheus, denied by default (ADR 0018): without METRICS_TOKEN set it does not exist (404);
with it, only a request bearing that token (Authorization: Bearer …, compared in constant time) gets an answer."""
import hmac

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from observability.metrics import metrics_render


def bearer_token_matches(*, authorization: str, token: str) -> bool:
    scheme, _, given = authorization.partition(" ")
    # compare_digest on bytes: constant time whatever the lengths, and no error on non-ASCII input.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@require_safe
def metrics_view(request):
    token = settings.HIPAAMAIL_METRICS_TOKEN
    if not token:
        raise Http404
    if not bearer_token_matches(authorization=request.headers.get("Authorization", ""), token=token):
        response = HttpResponse(status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    response = HttpResponse(metrics_render(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
