"""Who may see what of consent, for staff pages. One policy: compliance officers and administrators see
patient-level evidence and manage purposes, forms and imports; everyone else gets the same 404 as a missing
record (R-MIN-NECESSARY). Patient pages have their own check (consent.portal_session)."""
from accounts.roles import sees_patient_evidence
from audit.exceptions import NotFound
from consent.models import Authorization, AuthorizationForm, Patient, PatientImport, Purpose


def access_consent_staff(user) -> None:
    if not sees_patient_evidence(user):
        raise NotFound


def _get_or_404(queryset, **lookup):
    found = queryset.filter(**lookup).first()
    if found is None:
        raise NotFound
    return found


def access_patient_by_id(user, patient_id: int) -> Patient:
    access_consent_staff(user)
    return _get_or_404(Patient.objects, pk=patient_id)


def access_authorization_by_id(user, patient_id: int, authorization_id: int) -> Authorization:
    patient = access_patient_by_id(user, patient_id)
    return _get_or_404(Authorization.objects.select_related("purpose", "patient"), pk=authorization_id, patient=patient)


def access_any_authorization_by_id(user, authorization_id: int) -> Authorization:
    access_consent_staff(user)
    return _get_or_404(Authorization.objects.select_related("patient", "purpose"), pk=authorization_id)


def access_purpose_by_id(user, purpose_id: int) -> Purpose:
    access_consent_staff(user)
    return _get_or_404(Purpose.objects, pk=purpose_id)


def access_form_version_by_id(user, purpose_id: int, form_id: int) -> AuthorizationForm:
    access_consent_staff(user)
    return _get_or_404(
        AuthorizationForm.objects.select_related("purpose", "published_by"), pk=form_id, purpose_id=purpose_id
    )


def access_patient_import_by_id(user, import_id: int) -> PatientImport:
    access_consent_staff(user)
    return _get_or_404(PatientImport.objects.select_related("uploaded_by"), pk=import_id)
