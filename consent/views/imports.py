"""Patient import pages: upload, preview (counts and per-row errors, never a value), start, progress, result.

Only compliance officers and administrators import patients; anyone else gets the same 404 as a page that
does not exist (R-MIN-NECESSARY)."""
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from consent.forms.imports import PatientImportUploadForm
from consent.models import PatientImport
from consent.patient_import.validate import COLUMNS, HEADER_ALIASES, MAX_STORED_ERRORS, ImportRefused, error_message
from consent.permissions import access_consent_staff, access_patient_import_by_id
from consent.services import imports

RECENT_IMPORTS = 10


def _percent(patient_import: PatientImport) -> int:
    if patient_import.status == PatientImport.Status.DONE:
        return 100
    if not patient_import.total_rows:
        return 0
    return min(100, round(100 * patient_import.processed_rows / patient_import.total_rows))


@require_http_methods(["GET", "HEAD", "POST"])
def import_upload(request):
    access_consent_staff(request.user)
    if request.method == "POST":
        data = request.POST.copy()
        data.setdefault("mode", PatientImport.Mode.CREATE)  # an upload that names no mode adds new patients only
        form = PatientImportUploadForm(data, request.FILES)
    else:
        form = PatientImportUploadForm()
    if request.method == "POST" and form.is_valid():
        patient_import = imports.patient_import_upload(
            actor=request.user, content=form.cleaned_data["file"].read(), mode=form.cleaned_data["mode"]
        )
        return redirect("consent:import_detail", import_id=patient_import.pk)
    recent = PatientImport.objects.select_related("uploaded_by").order_by("-created_at")[:RECENT_IMPORTS]
    return render(
        request,
        "consent/imports/upload.html",
        {"form": form, "recent": recent, "columns": COLUMNS, "aliases": sorted(HEADER_ALIASES.items())},
    )


@require_safe
def import_detail(request, import_id: int):
    patient_import = access_patient_import_by_id(request.user, import_id)
    errors = [{**error, "message": error_message(error)} for error in patient_import.errors]
    return render(
        request,
        "consent/imports/detail.html",
        {
            "patient_import": patient_import,
            "errors": errors,
            "errors_truncated": len(patient_import.errors) >= MAX_STORED_ERRORS,
            "valid_rows": max(0, patient_import.total_rows - patient_import.error_count),
            "can_start": patient_import.status == PatientImport.Status.PREVIEWED
            and not patient_import.error_count
            and patient_import.total_rows > 0
            and bool(patient_import.file),
            "percent": _percent(patient_import),
            "is_update": patient_import.mode == PatientImport.Mode.UPDATE,
        },
    )


@require_POST
def import_start(request, import_id: int):
    patient_import = access_patient_import_by_id(request.user, import_id)
    try:
        imports.patient_import_start(actor=request.user, patient_import_id=patient_import.pk)
    except ImportRefused as refusal:
        messages.error(request, refusal.message)
    return redirect("consent:import_detail", import_id=patient_import.pk)


@require_safe
def import_progress(request, import_id: int):
    """Polled by the progress page every second: counts only."""
    patient_import = access_patient_import_by_id(request.user, import_id)
    return JsonResponse(
        {
            "status": patient_import.status,
            "processed_rows": patient_import.processed_rows,
            "total_rows": patient_import.total_rows,
            "percent": _percent(patient_import),
        }
    )
