"""Webhook subscriptions in the browser, per API key: list, create (the signing secret shown once), delete, and
each subscription's delivery log with "retry now" for a failed delivery. Administrators only (api.permissions):
anyone else gets the same 404 as a page that does not exist."""
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from api.forms.webhooks import WebhookSubscriptionForm
from api.keys import api_key_state
from api.models import WebhookDelivery, WebhookSubscription
from api.permissions import access_api_key_by_id
from api.webhooks import EVENT_TYPES, webhook_delivery_retry, webhook_subscription_create, webhook_subscription_delete
from audit.exceptions import NotFound

DELIVERIES_PER_PAGE = 50


def _access_subscription(user, key_id: int, subscription_id: int) -> WebhookSubscription:
    """The subscription of this key; a subscription of another key, or none, is the same 404."""
    key = access_api_key_by_id(user, key_id)
    subscription = WebhookSubscription.objects.filter(pk=subscription_id, api_key=key).first()
    if subscription is None:
        raise NotFound
    subscription.api_key = key
    return subscription


@require_safe
def webhook_list(request, key_id: int):
    key = access_api_key_by_id(request.user, key_id)
    key.state = api_key_state(key)
    subscriptions = list(key.webhooks.select_related("created_by").order_by("-created_at"))
    return render(
        request,
        "api/webhook_list.html",
        {"key": key, "subscriptions": subscriptions, "event_types": EVENT_TYPES},
    )


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def webhook_create(request, key_id: int):
    key = access_api_key_by_id(request.user, key_id)
    key.state = api_key_state(key)
    if key.state != "active":
        raise NotFound
    form = WebhookSubscriptionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = webhook_subscription_create(
                actor=request.user,
                api_key_id=key.pk,
                url=form.cleaned_data["url"],
                event_types=form.cleaned_data["event_types"],
            )
        except ValidationError as error:
            form.add_error("url" if error.code in ("bad_url", "url_refused") else None, error)
        else:
            # The secret is rendered once, here, and never again: only its encrypted copy is kept, for signing.
            return render(
                request,
                "api/webhook_created.html",
                {"key": key, "subscription": created.subscription, "secret": created.secret,
                 "event_types": EVENT_TYPES},
            )
    return render(request, "api/webhook_form.html", {"key": key, "form": form})


@require_POST
def webhook_delete(request, key_id: int, subscription_id: int):
    subscription = _access_subscription(request.user, key_id, subscription_id)
    webhook_subscription_delete(actor=request.user, subscription_id=subscription.pk)
    messages.success(
        request, _("The webhook to %(url)s is deleted: nothing more is sent to it.") % {"url": subscription.url}
    )
    return redirect("integrations:webhook_list", key_id=key_id)


@require_safe
def webhook_deliveries(request, key_id: int, subscription_id: int):
    subscription = _access_subscription(request.user, key_id, subscription_id)
    deliveries = subscription.deliveries.order_by("-created_at", "-id").only(
        "id", "event_type", "created_at", "status", "attempts", "last_status_code", "last_error",
        "next_attempt_at", "delivered_at",
    )
    page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "api/webhook_deliveries.html",
        {"key": subscription.api_key, "subscription": subscription, "page": page, "Status": WebhookDelivery.Status},
    )


@require_POST
def webhook_delivery_retry_now(request, key_id: int, subscription_id: int, delivery_id: int):
    subscription = _access_subscription(request.user, key_id, subscription_id)
    if not subscription.deliveries.filter(pk=delivery_id).exists():
        raise NotFound
    try:
        webhook_delivery_retry(actor=request.user, delivery_id=delivery_id)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("The delivery is queued for one more attempt now."))
    return redirect("integrations:webhook_deliveries", key_id=key_id, subscription_id=subscription.pk)
