"""FHIR Consent export (one authorization, R4 or R5 form) and Bundle import, for compliance officers and
administrators (R-MIN-NECESSARY; others get 404). Both audited (R-SEC-AUDIT)."""
import json

from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_safe

from audit import actions
from audit.services import audit_record
from consent import fhir
from consent.forms.patients import FhirImportForm
from consent.permissions import access_any_authorization_by_id, access_consent_staff
from consent.services.fhir import fhir_bundle_import


@require_safe
def fhir_export(request, authorization_id: int, version: str):
    authorization = access_any_authorization_by_id(request.user, authorization_id)
    if version not in fhir.VERSIONS:
        raise Http404
    resource = fhir.authorization_to_fhir(authorization, version=version)
    audit_record(
        actor=request.user,
        action=actions.AUTHORIZATION_FHIR_EXPORTED,
        object_type="authorization",
        object_id=authorization.pk,
        patient_id=authorization.patient_id,
        details={"version": version},
    )
    response = HttpResponse(json.dumps(resource, indent=2), content_type="application/fhir+json")
    response["Content-Disposition"] = f'attachment; filename="consent-{authorization.pk}-{version}.json"'
    return response


@require_http_methods(["GET", "HEAD", "POST"])
def fhir_import(request):
    access_consent_staff(request.user)
    form = FhirImportForm(request.POST, request.FILES) if request.method == "POST" else FhirImportForm()
    report = None
    if request.method == "POST" and form.is_valid():
        try:
            report = fhir_bundle_import(actor=request.user, raw=form.cleaned_data["bundle"].read())
        except ValidationError as error:
            form.add_error("bundle", error)
    status = 400 if request.method == "POST" and report is None else 200
    return render(request, "consent/fhir/import.html", {"form": form, "report": report}, status=status)
