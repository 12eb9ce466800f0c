from django.urls import include, path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("<int:campaign_id>/", views.campaign_detail, name="detail"),
    path("<int:campaign_id>/progress/", views.campaign_progress, name="progress"),
    path("segments/", include("campaigns.urls_segments")),
    path("content/", include("campaigns.urls_content")),
    path("", include("campaigns.urls_editor")),
    path("", include("campaigns.urls_review")),
    path("", include("campaigns.urls_results")),
]
