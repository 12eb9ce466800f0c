"""The patient portal, mounted at /my/ with the namespace "portal" by hipaamail.urls through
patient_pages(): the staff check does not apply here; views that show or change a patient's data need the
emailed code (consent.portal_session.patient_required). URLs carry random tokens and row ids, never an
email address or a name (R-NO-PHI-LEAK)."""
from django.urls import path

from consent.views import portal as views

urlpatterns = [
    path("", views.home, name="home"),
    path("invite/<str:token>/", views.invitation_open, name="invitation_open"),
    path("sign-in/", views.sign_in, name="sign_in"),
    path("code/", views.code_enter, name="code"),
    path("sign-out/", views.sign_out, name="sign_out"),
    path("sign/<int:purpose_id>/", views.sign, name="sign"),
    path("signed/<int:authorization_id>/", views.signed, name="signed"),
    path("authorizations/<int:authorization_id>/pdf/", views.authorization_pdf, name="authorization_pdf"),
    path("authorizations/<int:authorization_id>/stop/", views.revoke, name="revoke"),
]
