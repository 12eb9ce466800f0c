"""One-click unsubscribe at /unsubscribe/<token>/ (R-RFC8058, R-CANSPAM-OPTOUT): public, no cookie, no sign-in; the
signed token is the credential. GET (and HEAD) asks for confirmation, POST revokes at once; other methods get 405.

Abuse resistance (issue 16): a link that is not ours is counted per interval, not audited per request
(campaigns.services.unsubscribe), and strictly throttled per client address; our links are throttled per address
(generously: mailbox providers POST from a few addresses) and per link (accounts.throttle).

Undo (issue 17, item 5; ADR 0027): the page that confirms a one-click unsubscribe offers "Changed your mind?" for
UNDO_SECONDS. The undo is a POST to the same address with the signed undo token, and unlike the one-click POST (which
mailbox providers make without a session, RFC 8058) it is CSRF-protected: a person on our page makes it. A person who
unsubscribed on our page (not a mailbox provider's one-click POST) keeps the offer in their session for the same
window, so switching the page's language (which reloads it) does not take it away.

The pages are in the patient's language (Patient.language), unless they chose another on this device."""
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from accounts.throttle import client_ip, throttle_check
from campaigns.models import Delivery
from campaigns.sending.messages import unsubscribe_token_read
from campaigns.services.unsubscribe import (
    UNDO_SECONDS,
    UndoRefused,
    delivery_unsubscribe,
    delivery_unsubscribe_undo,
    delivery_unsubscribe_viewed,
    unsubscribe_bad_token_count,
    unsubscribe_undo_token,
    unsubscribe_undo_token_fresh,
)
from consent.languages import language_activate, language_for_patient
from consent.selectors.coverage import authorization_covering_list

# This browser's undo offer (ADR 0027): {"delivery": id, "token": the signed undo token}.
_UNDO_SESSION_KEY = "unsubscribe_undo"


def _bad_link(request):
    unsubscribe_bad_token_count()
    refused = throttle_check(request, scope="unsubscribe_bad_token")
    if refused is not None:
        return refused
    return render(request, "campaigns/unsubscribe_invalid.html", status=404)


@csrf_protect
def _undo(request, delivery: Delivery):
    """A person on our confirmation page changed their mind: restore what the one click stopped, if still in time."""
    try:
        delivery_unsubscribe_undo(
            delivery_id=delivery.pk,
            token=request.POST.get("undo", ""),
            signed_ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
        )
    except UndoRefused as refused:
        return render(
            request,
            "campaigns/unsubscribe_undone.html",
            {"purpose": delivery.campaign.purpose, "refused": refused.reason},
            status=410 if refused.reason == "expired" else 409,
        )
    return render(request, "campaigns/unsubscribe_undone.html", {"purpose": delivery.campaign.purpose})


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
    delivery = Delivery.objects.select_related("campaign__purpose", "patient").filter(pk=delivery_id).first()
    if delivery is None:
        return _bad_link(request)
    language_activate(request, language_for_patient(request, delivery.patient.language))
    purpose = delivery.campaign.purpose
    if request.method == "POST":
        if "undo" in request.POST:
            return _undo(request, delivery)
        revoked = delivery_unsubscribe(delivery_id=delivery.pk)
        # A second use of the link revokes nothing: say so plainly rather than pretend.
        context = {"purpose": purpose, "already": not revoked}
        if revoked:
            context["undo_token"] = unsubscribe_undo_token(delivery_id=delivery.pk, revocations=revoked)
            context["undo_minutes"] = UNDO_SECONDS // 60
            if request.POST.get("from") == "page":
                request.session[_UNDO_SESSION_KEY] = {"delivery": delivery.pk, "token": context["undo_token"]}
        return render(request, "campaigns/unsubscribe_done.html", context)
    if request.method == "GET":
        delivery_unsubscribe_viewed(delivery=delivery)
    if not authorization_covering_list(purpose_id=purpose.pk, patient_ids=[delivery.patient_id]).exists():
        context = {"purpose": purpose, "already": True}
        kept = request.session.get(_UNDO_SESSION_KEY) if hasattr(request, "session") else None
        if kept and kept.get("delivery") == delivery.pk and unsubscribe_undo_token_fresh(kept.get("token", "")):
            context.update(undo_token=kept["token"], undo_minutes=UNDO_SECONDS // 60)
        return render(request, "campaigns/unsubscribe_done.html", context)
    return render(request, "campaigns/unsubscribe_confirm.html", {"purpose": purpose})
