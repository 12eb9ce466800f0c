"""URLs of the api app: the integration API itself at /api/v1/ (`api_patterns`: a key per operation, no session)
and the administrators' pages for keys and webhooks at /integrations/ (`urlpatterns`: staff, deny by default; the
views narrow them to administrators)."""
from api.main import api

app_name = "integrations"

urlpatterns: list = [
    # API keys (api.views.keys).
    # Webhook subscriptions and their delivery log (api.views.webhooks).
]

api_patterns = api.urls
