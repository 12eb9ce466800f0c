"""The care events import page: upload a CSV of events, see every problem (row, column, code, never a value) or
the counts, and record the file whole or not at all (consent.services.event_import).

Only compliance officers and administrators import; anyone else gets the same 404 as a page that does not exist
(R-MIN-NECESSARY). The file is checked in the request and never kept: there is no stored preview to come back to,
so "check only" and "record" are two submissions of the same file."""
from django.shortcuts import render
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from consent.events import EVENT_TYPES, vocabulary
from consent.forms.imports import EventImportForm
from consent.permissions import access_consent_staff
from consent.services.event_import import (
    DEFAULT_SOURCE,
    HEADER_ALIASES,
    MAX_ROWS,
    EventImportRefused,
    event_csv_import,
    event_import_error_message,
)


@require_http_methods(["GET", "HEAD", "POST"])
def event_import(request):
    access_consent_staff(request.user)
    form = EventImportForm(request.POST or None, request.FILES or None)
    context = {
        "form": form,
        # The API gives the vocabulary in English; this page reads it in the staff member's language.
        "types": [{**item, "description": gettext(item["description"])} for item in vocabulary()],
        "aliases": sorted(HEADER_ALIASES.items()),
        "default_source": DEFAULT_SOURCE,
        "max_rows": MAX_ROWS,
        "type_count": len(EVENT_TYPES),
    }
    if request.method != "POST" or not form.is_valid():
        return render(request, "consent/imports/events_upload.html", context)
    dry_run = form.cleaned_data["action"] == EventImportForm.CHECK
    try:
        validation = event_csv_import(actor=request.user, content=form.cleaned_data["file"].read(), dry_run=dry_run)
        refused = False
    except EventImportRefused as refusal:
        validation, refused = refusal.validation, True
    errors = [{**error, "message": event_import_error_message(error)} for error in validation.errors]
    return render(
        request,
        "consent/imports/events_result.html",
        context | {"validation": validation, "errors": errors, "refused": refused, "dry_run": dry_run},
    )
