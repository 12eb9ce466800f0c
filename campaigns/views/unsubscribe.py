"""One-click unsubscribe at /unsubscribe/<token>/ (R-RFC8058, R-CANSPAM-OPTOUT): public, no cookie, no sign-in; the
signed token is the credential. GET (and HEAD) asks for confirmation, POST revokes at once; other methods get 405.

Abuse resistance (issue 16): a link that is not ours is counted per interval, not audited per request
(campaigns.services.unsubscribe), and strictly throttled per client address; our links are throttled per address
(generously: mailbox providers POST from a few addresses) and per link (accounts.throttle)."""
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.throttle import throttle_check
from campaigns.models import Delivery
from campaigns.sending.messages import unsubscribe_token_read
from campaigns.services.unsubscribe import (
    delivery_unsubscribe,
    delivery_unsubscribe_viewed,
    unsubscribe_bad_token_count,
)
from consent.selectors.coverage import authorization_covering_list


def _bad_link(request):
    unsubscribe_bad_token_count()
    refused = throttle_check(request, scope="unsubscribe_bad_token")
    if refused is not None:
        return refused
    return render(request, "campaigns/unsubscribe_invalid.html", status=404)


@csrf_exempt  # mailbox providers POST here without a session (RFC 8058); the signed token is the credential
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    """GET asks for confirmation (audited as viewed); HEAD answers the same without the audit; POST revokes at
    once. A bad link gets a clear page, not an error."""
    delivery_id = unsubscribe_token_read(token)
    if delivery_id is None:
        return _bad_link(request)
    refused = throttle_check(request, scope="unsubscribe", key=f"delivery:{delivery_id}")
    if refused is not None:
        return refused
    delivery = Delivery.objects.select_related("campaign__purpose").filter(pk=delivery_id).first()
    if delivery is None:
        return _bad_link(request)
    purpose = delivery.campaign.purpose
    if request.method == "POST":
        revoked = delivery_unsubscribe(delivery_id=delivery.pk)
        # A second use of the link revokes nothing: say so plainly rather than pretend.
        return render(request, "campaigns/unsubscribe_done.html", {"purpose": purpose, "already": not revoked})
    if request.method == "GET":
        delivery_unsubscribe_viewed(delivery=delivery)
    if not authorization_covering_list(purpose_id=purpose.pk, patient_ids=[delivery.patient_id]).exists():
        return render(request, "campaigns/unsubscribe_done.html", {"purpose": purpose, "already": True})
    return render(request, "campaigns/unsubscribe_confirm.html", {"purpose": purpose})
