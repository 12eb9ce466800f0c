"""Every URL of the journeys app, at /journeys/ (namespace "journeys"). Deny by default (accounts.access): each page
needs a verified staff member; the views narrow further (the review page, pause, resume and stop to compliance
officers and administrators: others get a 404). Every action is a POST (CSRF-checked)."""
from django.urls import path

from journeys.views import builder, journeys, results, review

app_name = "journeys"

urlpatterns = [
    path("", journeys.journey_list_page, name="list"),
    path("new/", builder.journey_new, name="new"),
    path("<int:journey_id>/", journeys.journey_detail, name="detail"),
    path("<int:journey_id>/edit/", builder.journey_edit, name="edit"),
    path("<int:journey_id>/submit/", journeys.journey_submit, name="submit"),
    path("<int:journey_id>/review/", review.journey_review, name="review"),
    path("<int:journey_id>/pause/", journeys.journey_pause, name="pause"),
    path("<int:journey_id>/resume/", journeys.journey_resume, name="resume"),
    path("<int:journey_id>/stop/", journeys.journey_stop, name="stop"),
    path("<int:journey_id>/results/", results.journey_results_page, name="results"),
]
