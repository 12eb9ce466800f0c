"""The public ends of opt-in tracking (campaigns.sending.tracking): an open pixel and a click redirect.

No session is read or written, no cookie is set, nothing is logged or audited per open or click (the delivery
row keeps the first of each; the audit trail records state changes of consent and sending, and a busy campaign's
opens would swamp it). Every answer is the same whether or not anything was recorded, so the endpoints tell a
visitor nothing about a delivery."""
import base64

from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_safe

from campaigns.sending.tracking import delivery_click_record, delivery_open_record, link_token_read, tracking_token_read

# The smallest transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _private(response: HttpResponse) -> HttpResponse:
    add_never_cache_headers(response)  # each load reaches us, and no shared cache keeps a recipient's token
    response["Referrer-Policy"] = "no-referrer"  # the target site never sees the token in a Referer
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@require_safe
def tracking_open(request, token: str):
    """The 1x1 image at the end of a tracked message: records the first open, always answers with the image."""
    delivery_id = tracking_token_read(token)
    if delivery_id is not None and request.method == "GET":
        delivery_open_record(delivery_id=delivery_id)
    return _private(HttpResponse(PIXEL, content_type="image/gif"))


@require_safe
def tracking_click(request, token: str, link: str):
    """A tracked link: records the first click, then redirects to the link's target, a URL the campaign's content
    held (signed when the message was made). A link we did not sign gets a plain page, never a redirect."""
    target = link_token_read(link)
    if target is None:
        return _private(render(request, "campaigns/tracking_link_invalid.html", status=404))
    campaign_id, url = target
    delivery_id = tracking_token_read(token)
    if delivery_id is not None and request.method == "GET":
        delivery_click_record(delivery_id=delivery_id, campaign_id=campaign_id)
    return _private(HttpResponseRedirect(url))
