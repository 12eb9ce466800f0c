"""Campaign review and sending, mounted at /campaigns/ in the "campaigns" namespace. Staff only (the default);
for compliance officers and administrators (the views give others a 404). Every action is a POST."""
from django.urls import path

from campaigns import views_review

urlpatterns = [
    path("<int:campaign_id>/review/", views_review.campaign_review, name="campaign_review"),
    path("<int:campaign_id>/launch/", views_review.campaign_launch_now, name="campaign_launch_now"),
    path("<int:campaign_id>/schedule/", views_review.campaign_schedule, name="campaign_schedule"),
    path("<int:campaign_id>/pause/", views_review.campaign_pause, name="campaign_pause"),
    path("<int:campaign_id>/resume/", views_review.campaign_resume, name="campaign_resume"),
    path("<int:campaign_id>/cancel/", views_review.campaign_cancel, name="campaign_cancel"),
]
