"""URLs of the api app: the integration API itself at /api/v1/ (`api_patterns`: a key per operation, no session)
and the administrators' pages for keys and webhooks at /integrations/ (`urlpatterns`: staff, deny by default)."""
from api.main import api

app_name = "integrations"

urlpatterns: list = []

api_patterns = api.urls
