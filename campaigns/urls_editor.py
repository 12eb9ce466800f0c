"""Campaign editor pages, mounted at /campaigns/ in the "campaigns" namespace. Staff only (the default)."""
from django.urls import path

from campaigns import views_editor

urlpatterns = [
    path("new/", views_editor.campaign_new, name="campaign_new"),
    path("preview/", views_editor.campaign_preview, name="campaign_preview"),
    path("<int:campaign_id>/edit/", views_editor.campaign_edit, name="campaign_edit"),
    path("<int:campaign_id>/test-send/", views_editor.campaign_test_send, name="campaign_test_send"),
    path("<int:campaign_id>/submit/", views_editor.campaign_submit, name="campaign_submit"),
]
