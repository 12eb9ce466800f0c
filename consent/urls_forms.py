"""Purposes and their authorization form versions (/consent/purposes/). Staff pages: deny by default applies,
and the views give 404 to anyone but compliance officers and administrators. URLs carry ids only."""
from django.urls import path

from consent.views import forms as views

urlpatterns = [
    path("", views.purpose_list, name="purpose_list"),
    path("new/", views.purpose_create, name="purpose_create"),
    path("<int:purpose_id>/", views.purpose_detail, name="purpose_detail"),
    path("<int:purpose_id>/edit/", views.purpose_edit, name="purpose_edit"),
    path("<int:purpose_id>/forms/new/", views.form_create, name="form_create"),
    path("<int:purpose_id>/forms/<int:form_id>/", views.form_edit, name="form_edit"),
    path("<int:purpose_id>/forms/<int:form_id>/preview/", views.form_preview, name="form_preview"),
    path("<int:purpose_id>/forms/<int:form_id>/publish/", views.form_publish, name="form_publish"),
]
