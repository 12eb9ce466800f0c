"""Segment pages, mounted at /campaigns/segments/ in the "campaigns" namespace. Staff only (the default)."""
from django.urls import path

from campaigns import views_segments

urlpatterns = [
    path("", views_segments.segment_list, name="segment_list"),
    path("new/", views_segments.segment_create, name="segment_create"),
    path("counts/", views_segments.segment_counts, name="segment_counts"),
    path("<int:segment_id>/", views_segments.segment_edit, name="segment_edit"),
]
