"""Compliance reports (campaign evidence, patient consent ledger, compliance summary) as PDF and CSV, mounted at
/reports/ in the "reports" namespace. Compliance officers and administrators only; every export asks for the
second factor again and is audited."""
from django.urls import path  # noqa: F401

app_name = "reports"

urlpatterns: list = []
