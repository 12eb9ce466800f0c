"""The staff patient record (mounted at /consent/patients/ in the "consent" namespace). Staff only, by the
default of hipaamail.access; the views narrow it to compliance officers and administrators. No identifier
in any URL: the search is a POST, the record is addressed by its numeric id (R-NO-PHI-LEAK)."""
from django.urls import path

from consent.views import patients

urlpatterns = [
    path("", patients.patient_search, name="patient_search"),
    path("<int:patient_id>/", patients.patient_detail, name="patient_detail"),
    path("<int:patient_id>/invite/", patients.patient_invite, name="patient_invite"),
    path(
        "<int:patient_id>/written-authorization/",
        patients.patient_written_authorization,
        name="patient_written_authorization",
    ),
    path(
        "<int:patient_id>/authorizations/<int:authorization_id>/revoke/",
        patients.patient_written_revocation,
        name="patient_written_revocation",
    ),
    path(
        "<int:patient_id>/authorizations/<int:authorization_id>/expiry-event/",
        patients.patient_expiry_event,
        name="patient_expiry_event",
    ),
    path(
        "<int:patient_id>/authorizations/<int:authorization_id>/defect/",
        patients.patient_defect,
        name="patient_defect",
    ),
    path(
        "<int:patient_id>/authorizations/<int:authorization_id>/<slug:kind>/",
        patients.patient_document,
        name="patient_document",
    ),
]
