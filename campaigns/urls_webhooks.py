"""Mail provider webhooks (bounces, complaints), mounted at /webhooks/. Each view is public() and checks the
provider's own signature."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
