"""Patient import pages (compliance officers and administrators; anyone else gets a 404)."""
from django.urls import path

from consent.views import imports as views

urlpatterns = [
    path("", views.import_upload, name="import_upload"),
    path("<int:import_id>/", views.import_detail, name="import_detail"),
    path("<int:import_id>/start/", views.import_start, name="import_start"),
    path("<int:import_id>/progress/", views.import_progress, name="import_progress"),
]
