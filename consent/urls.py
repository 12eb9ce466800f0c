"""Every URL of the consent app, in one file. `urlpatterns` is the "consent" namespace at /consent/: staff pages
(deny by default, accounts.access), which the views narrow to compliance officers and administrators. URLs carry ids
only; the patient search is a POST (R-NO-PHI-LEAK). `portal_patterns` are the patient pages, mounted at /my/ in the
"portal" namespace by hipaamail.urls."""
from django.urls import path

from consent.views import event_imports, fhir, forms, imports, patients, portal

app_name = "consent"

urlpatterns = [
    # Purposes and their authorization form versions.
    path("purposes/", forms.purpose_list, name="purpose_list"),
    path("purposes/new/", forms.purpose_create, name="purpose_create"),
    path("purposes/<int:purpose_id>/", forms.purpose_detail, name="purpose_detail"),
    path("purposes/<int:purpose_id>/edit/", forms.purpose_edit, name="purpose_edit"),
    path("purposes/<int:purpose_id>/forms/new/", forms.form_create, name="form_create"),
    path("purposes/<int:purpose_id>/forms/<int:form_id>/", forms.form_edit, name="form_edit"),
    path("purposes/<int:purpose_id>/forms/<int:form_id>/preview/", forms.form_preview, name="form_preview"),
    path("purposes/<int:purpose_id>/forms/<int:form_id>/publish/", forms.form_publish, name="form_publish"),
    path("purposes/<int:purpose_id>/forms/<int:form_id>/translate/", forms.form_translate, name="form_translate"),
    # The staff patient record, addressed by its numeric id.
    path("patients/", patients.patient_search, name="patient_search"),
    path("patients/<int:patient_id>/", patients.patient_detail, name="patient_detail"),
    path("patients/<int:patient_id>/invite/", patients.patient_invite, name="patient_invite"),
    path("patients/<int:patient_id>/language/", patients.patient_language, name="patient_language"),
    path(
        "patients/<int:patient_id>/written-authorization/",
        patients.patient_written_authorization,
        name="patient_written_authorization",
    ),
    path(
        "patients/<int:patient_id>/authorizations/<int:authorization_id>/revoke/",
        patients.patient_written_revocation,
        name="patient_written_revocation",
    ),
    path(
        "patients/<int:patient_id>/authorizations/<int:authorization_id>/expiry-event/",
        patients.patient_expiry_event,
        name="patient_expiry_event",
    ),
    path(
        "patients/<int:patient_id>/authorizations/<int:authorization_id>/defect/",
        patients.patient_defect,
        name="patient_defect",
    ),
    path(
        "patients/<int:patient_id>/authorizations/<int:authorization_id>/<slug:kind>/",
        patients.patient_document,
        name="patient_document",
    ),
    # Patient imports.
    path("imports/", imports.import_upload, name="import_upload"),
    path("imports/<int:import_id>/", imports.import_detail, name="import_detail"),
    path("imports/<int:import_id>/start/", imports.import_start, name="import_start"),
    path("imports/<int:import_id>/progress/", imports.import_progress, name="import_progress"),
    # Care events from a CSV file (checked and recorded in the request; the file is not kept).
    path("imports/events/", event_imports.event_import, name="event_import"),
    # FHIR Consent export and import.
    path("fhir/import/", fhir.fhir_import, name="fhir_import"),
    path("fhir/authorizations/<int:authorization_id>/<str:version>.json", fhir.fhir_export, name="fhir_export"),
]

# The patient portal: no staff account (patient_pages() in hipaamail.urls lifts the staff check); views that show or
# change a patient's data need the emailed code (consent.portal_session.patient_required). URLs carry random tokens
# and row ids, never an email address or a name.
portal_patterns = [
    path("", portal.home, name="home"),
    path("invite/<str:token>/", portal.invitation_open, name="invitation_open"),
    path("sign-in/", portal.sign_in, name="sign_in"),
    path("code/", portal.code_enter, name="code"),
    path("sign-out/", portal.sign_out, name="sign_out"),
    # The language switcher of every patient page (POST, CSRF); stores a signed-in patient's choice.
    path("language/", portal.language_set, name="language"),
    path("sign/<int:purpose_id>/", portal.sign, name="sign"),
    path("signed/<int:authorization_id>/", portal.signed, name="signed"),
    path("authorizations/<int:authorization_id>/pdf/", portal.authorization_pdf, name="authorization_pdf"),
    path("authorizations/<int:authorization_id>/stop/", portal.revoke, name="revoke"),
]
