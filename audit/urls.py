"""Audit trail pages for compliance officers, mounted at /audit/ in the "audit" namespace."""
from django.urls import path  # noqa: F401

app_name = "audit"

urlpatterns: list = []
