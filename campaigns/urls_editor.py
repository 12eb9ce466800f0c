"""Campaign editor and review pages, mounted at /campaigns/ in the "campaigns" namespace. Staff only (the
default); review and send are for compliance officers and administrators (the views give others a 404)."""
from django.urls import path

from campaigns import views_editor

urlpatterns = [
    path("new/", views_editor.campaign_new, name="campaign_new"),
    path("<int:campaign_id>/edit/", views_editor.campaign_edit, name="campaign_edit"),
    path("<int:campaign_id>/submit/", views_editor.campaign_submit, name="campaign_submit"),
    path("<int:campaign_id>/review/", views_editor.campaign_review, name="campaign_review"),
    path("<int:campaign_id>/launch/", views_editor.campaign_launch_now, name="campaign_launch_now"),
]
