"""Staff pages of the consent app. Each area keeps its own URL list; all need a verified staff member."""
from django.urls import include, path

app_name = "consent"

urlpatterns = [
    path("purposes/", include("consent.urls_forms")),
    path("patients/", include("consent.urls_patients")),
    path("imports/", include("consent.urls_imports")),
    path("fhir/", include("consent.urls_fhir")),
]
