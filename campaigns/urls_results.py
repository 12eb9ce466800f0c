"""Campaign results, mounted at /campaigns/ in the "campaigns" namespace. Staff only (the default): every staff
role may download a campaign's aggregates; marketers get them with small cells suppressed (campaigns.results)."""
from django.urls import path

from campaigns import views_results

urlpatterns = [
    path("<int:campaign_id>/results.csv", views_results.campaign_results_csv, name="results_csv"),
]
