"""Audit trail pages for compliance officers, mounted at /audit/ in the "audit" namespace. Every page keeps
the project's default: a signed-in staff member past the second factor; the views then let only compliance
officers and administrators in (audit.permissions). hipaamail.urls adds the patient history page to this
namespace (audit:patient_history): it is composed in campaigns, which may read both the trail and deliveries."""
from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.audit_log, name="log"),
    path("verify/", views.audit_verify_now, name="verify"),
]
