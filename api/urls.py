"""URLs of the api app: the integration API itself at /api/v1/ (`api_patterns`: a key per operation, no session)
and the administrators' pages for keys and webhooks at /integrations/ (`urlpatterns`: staff, deny by default; the
views narrow them to administrators)."""
from django.urls import path

from api.main import api
from api.views import keys

app_name = "integrations"

urlpatterns: list = [
    # API keys (api.views.keys).
    path("keys/", keys.key_list, name="key_list"),
    path("keys/new/", keys.key_create, name="key_create"),
    path("keys/<int:key_id>/revoke/", keys.key_revoke, name="key_revoke"),
    # Webhook subscriptions and their delivery log (api.views.webhooks).
]

api_patterns = api.urls
