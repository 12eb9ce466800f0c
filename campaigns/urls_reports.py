"""Compliance reports (campaign evidence, patient consent ledger, compliance summary) as PDF and CSV, mounted at
/reports/ in the "reports" namespace. Compliance officers and administrators only; every export asks for the
second factor again and is audited. Staff-only by the default of hipaamail.access: no marker here. The exports
are POSTs, so no patient or campaign id is left in a URL, a browser history or a server log."""
from django.urls import path

from campaigns import views_reports

app_name = "reports"

urlpatterns = [
    path("", views_reports.report_index, name="index"),
    path("campaign-evidence/", views_reports.campaign_evidence_export, name="campaign_evidence"),
    path("patient-ledger/", views_reports.patient_ledger_export, name="patient_ledger"),
    path("compliance-summary/", views_reports.compliance_summary_export, name="compliance_summary"),
]
