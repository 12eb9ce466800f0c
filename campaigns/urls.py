"""Every URL of the campaigns app, in one file. Deny by default (accounts.access): each page needs a verified staff
member unless it is marked public(...) here; the views narrow staff pages further (review, reports and the content
library to compliance officers and administrators). `urlpatterns` is the "campaigns" namespace at /campaigns/; the
other lists are mounted by hipaamail.urls under their own prefixes and namespaces."""
from django.urls import path

from accounts.access import public
from campaigns.views import campaigns as views
from campaigns.views import (
    editor,
    history,
    library,
    notices,
    reports,
    results,
    review,
    segments,
    tracking,
    webhooks,
    wizard,
)
from campaigns.views import unsubscribe as unsubscribe_views

app_name = "campaigns"

urlpatterns = [
    path("<int:campaign_id>/", views.campaign_detail, name="detail"),
    path("<int:campaign_id>/progress/", views.campaign_progress, name="progress"),
    # The editor.
    path("new/", editor.campaign_new, name="campaign_new"),
    path("preview/", editor.campaign_preview, name="campaign_preview"),
    path("audience-options/", editor.campaign_audience_options, name="campaign_audience_options"),
    path("<int:campaign_id>/edit/", editor.campaign_edit, name="campaign_edit"),
    path("<int:campaign_id>/test-send/", editor.campaign_test_send, name="campaign_test_send"),
    path("<int:campaign_id>/submit/", editor.campaign_submit, name="campaign_submit"),
    # issue 17: the campaign wizard (purpose -> audience -> content -> review -> submit) and the draft actions.
    path("wizard/", wizard.wizard_start, name="wizard_start"),
    path("<int:campaign_id>/wizard/purpose/", wizard.wizard_purpose, name="wizard_purpose"),
    path("<int:campaign_id>/wizard/audience/", wizard.wizard_audience, name="wizard_audience"),
    path("<int:campaign_id>/wizard/content/", wizard.wizard_content, name="wizard_content"),
    path("<int:campaign_id>/wizard/review/", wizard.wizard_review, name="wizard_review"),
    path("<int:campaign_id>/duplicate/", editor.campaign_duplicate, name="campaign_duplicate"),
    path("<int:campaign_id>/delete/", editor.campaign_delete, name="campaign_delete"),
    path("<int:campaign_id>/withdraw/", editor.campaign_withdraw, name="campaign_withdraw"),
    # Review and sending: compliance officers and administrators (the views give others a 404); every action a POST.
    path("<int:campaign_id>/review/", review.campaign_review, name="campaign_review"),
    path("<int:campaign_id>/launch/", review.campaign_launch_now, name="campaign_launch_now"),
    path("<int:campaign_id>/schedule/", review.campaign_schedule, name="campaign_schedule"),
    path("<int:campaign_id>/pause/", review.campaign_pause, name="campaign_pause"),
    path("<int:campaign_id>/resume/", review.campaign_resume, name="campaign_resume"),
    path("<int:campaign_id>/cancel/", review.campaign_cancel, name="campaign_cancel"),
    # Issue 17, the review loop: the "needs your review" queue (compliance officers and administrators; a 404 for
    # others) and each staff member's own notices (opening one marks it read; marking read is a POST).
    path("review/", review.review_queue, name="review_queue"),
    path("notices/", notices.notice_list_page, name="notice_list"),
    path("notices/read/", notices.notice_read, name="notice_read"),
    path("notices/<int:notice_id>/", notices.notice_open, name="notice_open"),
    # Results: every staff role; marketers get aggregates with small cells suppressed.
    path("<int:campaign_id>/results.csv", results.campaign_results_csv, name="results_csv"),
    # Segments.
    path("segments/", segments.segment_list, name="segment_list"),
    path("segments/new/", segments.segment_create, name="segment_create"),
    path("segments/counts/", segments.segment_counts, name="segment_counts"),
    path("segments/<int:segment_id>/", segments.segment_edit, name="segment_edit"),
    # The content library (templates and blocks compliance officers manage; the views refuse marketers with a 404).
    path("content/", library.content_library, name="content_library"),
    path("content/templates/new/", library.email_template_new, name="content_template_new"),
    path("content/templates/<int:item_id>/", library.email_template_edit, name="content_template_edit"),
    path("content/blocks/new/", library.content_block_new, name="content_block_new"),
    path("content/blocks/<int:item_id>/", library.content_block_edit, name="content_block_edit"),
    path("content/<str:kind>/<int:item_id>/<str:action>/", library.library_item_action, name="content_item_action"),
]

# /reports/, namespace "reports": compliance reports (campaign evidence, patient consent ledger, compliance summary)
# as PDF and CSV. Compliance officers and administrators only; every export asks for the second factor again and is
# audited. The exports are POSTs, so no patient or campaign id is left in a URL, a browser history or a server log.
report_patterns = [
    path("", reports.report_index, name="index"),
    path("campaign-evidence/", reports.campaign_evidence_export, name="campaign_evidence"),
    path("patient-ledger/", reports.patient_ledger_export, name="patient_ledger"),
    path("compliance-summary/", reports.compliance_summary_export, name="compliance_summary"),
]

# A patient's history in the "audit" namespace: the trail joined with the messages the patient received, so composed
# here (dependencies point campaigns -> consent -> audit) and mounted beside the audit pages.
audit_patterns = [
    path("patients/<int:patient_id>/", history.patient_history, name="patient_history"),
]

# R-RFC8058 one-click unsubscribe at /unsubscribe/<token>/: a POST without cookies or login; the signed token is the
# credential.
unsubscribe_patterns = [
    path("unsubscribe/<str:token>/", public(unsubscribe_views.unsubscribe), name="unsubscribe"),
]

# /webhooks/, namespace "webhooks": mail provider webhooks (bounces, complaints). Public; each view checks the
# provider's own credentials (django-anymail's basic auth against ANYMAIL["WEBHOOK_SECRET"]).
webhook_patterns = [
    # Amazon SES events through an SNS subscription to https://user:password@host/webhooks/amazon-ses/tracking/
    path("amazon-ses/tracking/", public(webhooks.amazon_ses_tracking), name="amazon_ses_tracking"),
]

# /t/, namespace "tracking": opt-in open and click tracking. Public: no session, no cookie; a signed token naming one
# delivery is the credential, and a click's target is a signed URL from the campaign's content
# (campaigns.sending.tracking). Only GET and HEAD.
tracking_patterns = [
    path("o/<str:token>.gif", public(tracking.tracking_open), name="open"),
    path("c/<str:token>/<str:link>/", public(tracking.tracking_click), name="click"),
]
