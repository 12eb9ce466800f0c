"""FHIR Consent export and import (mounted at /consent/fhir/ in the "consent" namespace). Staff only, by the
default of hipaamail.access; the views narrow it to compliance officers and administrators."""
from django.urls import path

from consent.views import fhir

urlpatterns = [
    path("import/", fhir.fhir_import, name="fhir_import"),
    path("authorizations/<int:authorization_id>/<str:version>.json", fhir.fhir_export, name="fhir_export"),
]
