"""Campaign results, mounted at /campaigns/ in the "campaigns" namespace."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
