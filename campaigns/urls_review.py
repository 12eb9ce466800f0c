"""Campaign review and sending, mounted at /campaigns/ in the "campaigns" namespace. Staff only (the default);
for compliance officers and administrators (the views give others a 404)."""
from django.urls import path

from campaigns import views_review

urlpatterns = [
    path("<int:campaign_id>/review/", views_review.campaign_review, name="campaign_review"),
    path("<int:campaign_id>/launch/", views_review.campaign_launch_now, name="campaign_launch_now"),
]
