"""Audit trail pages for compliance officers, mounted at /audit/ in the "audit" namespace. Every page keeps
the project's default: a signed-in staff member past the second factor; the views then let only compliance
officers and administrators in (audit.permissions)."""
from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.audit_log, name="log"),
    path("patients/<int:patient_id>/", views.patient_history, name="patient_history"),
]
