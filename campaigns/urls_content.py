"""The content library (templates and blocks that compliance officers manage), mounted at /campaigns/content/."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
