"""URLs of the api app: the integration API itself at /api/v1/ (`api_patterns`: a key per operation, no session)
and the administrators' pages for keys and webhooks at /integrations/ (`urlpatterns`: staff, deny by default; the
views narrow them to administrators)."""
from django.urls import path

from api.main import api
from api.views import keys, webhooks

app_name = "integrations"

urlpatterns: list = [
    # API keys (api.views.keys).
    path("keys/", keys.key_list, name="key_list"),
    path("keys/new/", keys.key_create, name="key_create"),
    path("keys/<int:key_id>/revoke/", keys.key_revoke, name="key_revoke"),
    # Webhook subscriptions and their delivery log (api.views.webhooks).
    path("keys/<int:key_id>/webhooks/", webhooks.webhook_list, name="webhook_list"),
    path("keys/<int:key_id>/webhooks/new/", webhooks.webhook_create, name="webhook_create"),
    path("keys/<int:key_id>/webhooks/<int:subscription_id>/delete/", webhooks.webhook_delete, name="webhook_delete"),
    path(
        "keys/<int:key_id>/webhooks/<int:subscription_id>/deliveries/",
        webhooks.webhook_deliveries,
        name="webhook_deliveries",
    ),
    path(
        "keys/<int:key_id>/webhooks/<int:subscription_id>/deliveries/<int:delivery_id>/retry/",
        webhooks.webhook_delivery_retry_now,
        name="webhook_delivery_retry",
    ),
]

api_patterns = api.urls
