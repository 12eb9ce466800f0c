"""Purposes and authorization form versions, for compliance officers and administrators (issue 4, items 1-2).

Thin views: the services decide and audit. Marketers, and anyone asking for a purpose or version that does
not exist, get the same 404 (R-MIN-NECESSARY).
"""
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_safe

from consent.documents import form_sections
from consent.forms.authoring import AuthorizationFormDraftForm, PurposeForm
from consent.models import AuthorizationForm, Purpose
from consent.permissions import access_consent_staff, access_form_version_by_id, access_purpose_by_id
from consent.selectors.form_versions import form_version_current, form_version_history_list
from consent.services import form_versions
from consent.services import form_versions as form_versions_services
from consent.services.form_versions import purpose_tracking_set


def _add_service_errors(form, error: ValidationError) -> None:
    """Show a service's refusal on the form: on its field when the form has one, else above the form."""
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            target = field if field in form.fields else None  # NON_FIELD_ERRORS and model-only fields
            for item in errors:
                form.add_error(target, item.messages)
    else:
        form.add_error(None, error.messages)


def _readability(form_version: AuthorizationForm) -> dict:
    """The grade (English, Flesch-Kincaid) or the INFLESZ score (Spanish) of the text, and whether to warn."""
    readability = form_versions.form_version_readability(form_version)
    return {
        "language": readability.language,
        "grade": readability.score,
        "score": readability.score,
        "formula": readability.formula,
        "too_hard": readability.too_hard,
        "limit": readability.limit,
    }


# ---------------------------------------------------------------------------------------------------------
# Purposes


@require_safe
def purpose_list(request):
    access_consent_staff(request.user)
    purposes = list(Purpose.objects.order_by("name"))
    for purpose in purposes:
        purpose.current_form = form_version_current(purpose_id=purpose.pk)
    return render(request, "consent/forms/purpose_list.html", {"purposes": purposes})


@require_http_methods(["GET", "HEAD", "POST"])
def purpose_create(request):
    access_consent_staff(request.user)
    form = PurposeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            fields = dict(form.cleaned_data)
            tracking = fields.pop("tracking_enabled", False)
            purpose = form_versions_services.purpose_create(actor=request.user, **fields)
            if tracking:
                purpose_tracking_set(actor=request.user, purpose_id=purpose.pk, enabled=True)
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            messages.success(
                request, _("Purpose “%(name)s” created. Now write its authorization form.") % {"name": purpose.name}
            )
            return redirect("consent:purpose_detail", purpose_id=purpose.pk)
    return render(request, "consent/forms/purpose_form.html", {"form": form, "purpose": None})


@require_http_methods(["GET", "HEAD", "POST"])
def purpose_edit(request, purpose_id: int):
    purpose = access_purpose_by_id(request.user, purpose_id)
    initial = {name: getattr(purpose, name) for name in PurposeForm.base_fields}
    form = PurposeForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            fields = dict(form.cleaned_data)
            tracking = fields.pop("tracking_enabled", False)
            form_versions.purpose_update(actor=request.user, purpose_id=purpose.pk, **fields)
            purpose_tracking_set(actor=request.user, purpose_id=purpose.pk, enabled=tracking)
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            messages.success(request, _("Purpose saved."))
            return redirect("consent:purpose_detail", purpose_id=purpose.pk)
    return render(request, "consent/forms/purpose_form.html", {"form": form, "purpose": purpose})


@require_safe
def purpose_detail(request, purpose_id: int):
    """The purpose and the history of its form versions."""
    purpose = access_purpose_by_id(request.user, purpose_id)
    context = {
        "purpose": purpose,
        "versions": form_version_history_list(purpose_id=purpose.pk),
        "current": form_version_current(purpose_id=purpose.pk),
    }
    return render(request, "consent/forms/purpose_detail.html", context)


# ---------------------------------------------------------------------------------------------------------
# Form versions


@require_http_methods(["GET", "HEAD", "POST"])
def form_create(request, purpose_id: int):
    """A new draft: empty, or a copy of an existing version ("new version from this one"). POST only; a GET
    (a bookmarked or reloaded address) goes back to the purpose."""
    purpose = access_purpose_by_id(request.user, purpose_id)
    if request.method != "POST":
        return redirect("consent:purpose_detail", purpose_id=purpose.pk)
    copy_from = request.POST.get("copy_from") or None
    if copy_from is not None and not copy_from.isdigit():
        raise Http404
    try:
        form = form_versions.form_version_create(
            actor=request.user, purpose_id=purpose.pk, copy_from_id=int(copy_from) if copy_from else None
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("consent:purpose_detail", purpose_id=purpose.pk)
    messages.success(request, _("Draft version %(version)s created.") % {"version": form.version})
    return redirect("consent:form_edit", purpose_id=purpose.pk, form_id=form.pk)


def _render_editor(request, form_version, draft_form, *, publish_errors=(), status=200):
    shown = form_version
    if draft_form.is_bound:
        shown = draft_form.unsaved_form_version(form_version)
    context = {
        "purpose": form_version.purpose,
        "form_version": form_version,
        "form": draft_form,
        "readability": _readability(shown),
        "publish_errors": publish_errors,
        "missing_count": len(form_versions.form_version_missing_elements(form_version)),
    }
    return render(request, "consent/forms/form_edit.html", context, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
def form_edit(request, purpose_id: int, form_id: int):
    form_version = access_form_version_by_id(request.user, purpose_id, form_id)
    if form_version.status == AuthorizationForm.Status.PUBLISHED:
        # R-AUTH-IMMUTABLE: nothing to edit; the page says so and offers a new version.
        return render(
            request,
            "consent/forms/form_published.html",
            {"purpose": form_version.purpose, "form_version": form_version},
            status=409 if request.method == "POST" else 200,
        )
    if request.method == "POST":
        draft_form = AuthorizationFormDraftForm(request.POST)
        if draft_form.is_valid():
            try:
                form_versions.form_version_update(
                    actor=request.user, form_id=form_version.pk, **draft_form.cleaned_data
                )
            except ValidationError as error:
                _add_service_errors(draft_form, error)
            else:
                messages.success(request, _("Draft saved."))
                return redirect("consent:form_edit", purpose_id=purpose_id, form_id=form_version.pk)
        return _render_editor(request, form_version, draft_form, status=400)
    draft_form = AuthorizationFormDraftForm(initial=AuthorizationFormDraftForm.initial_from(form_version))
    return _render_editor(request, form_version, draft_form)


@require_http_methods(["GET", "HEAD", "POST"])
def form_publish(request, purpose_id: int, form_id: int):
    """POST only; a GET (a reloaded error page) goes back to the editor."""
    form_version = access_form_version_by_id(request.user, purpose_id, form_id)
    if request.method != "POST":
        return redirect("consent:form_edit", purpose_id=purpose_id, form_id=form_version.pk)
    try:
        form_versions.form_version_publish(actor=request.user, form_id=form_version.pk)
    except ValidationError as error:
        if form_version.status == AuthorizationForm.Status.PUBLISHED:
            messages.error(request, " ".join(error.messages))
            return redirect("consent:form_edit", purpose_id=purpose_id, form_id=form_version.pk)
        draft_form = AuthorizationFormDraftForm(initial=AuthorizationFormDraftForm.initial_from(form_version))
        missing = [
            {"citation": form_versions.rule_citation(item.code), "text": item.message} for item in error.error_list
        ]
        return _render_editor(request, form_version, draft_form, publish_errors=missing, status=400)
    messages.success(
        request,
        _("Version %(version)s is published. New signatures use it from now on.") % {"version": form_version.version},
    )
    return redirect("consent:purpose_detail", purpose_id=purpose_id)


@require_http_methods(["GET", "HEAD", "POST"])
def form_translate(request, purpose_id: int, form_id: int):
    """The Spanish version of a published English version (ADR 0026): POST makes its draft (or opens the one that
    exists), copied from the English text for the author to translate. A GET goes back to the purpose."""
    form_version = access_form_version_by_id(request.user, purpose_id, form_id)
    if request.method != "POST":
        return redirect("consent:purpose_detail", purpose_id=purpose_id)
    try:
        translation = form_versions.form_version_translation_create(
            actor=request.user, form_id=form_version.pk, language=request.POST.get("language", "es")
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("consent:purpose_detail", purpose_id=purpose_id)
    if translation.status == AuthorizationForm.Status.DRAFT:
        messages.success(
            request,
            _(
                "Spanish draft of version %(version)s. Translate each part; the end of the authorization and the "
                "patient fields are those of the English version."
            ) % {"version": translation.version},
        )
    return redirect("consent:form_edit", purpose_id=purpose_id, form_id=translation.pk)


@require_safe
def form_preview(request, purpose_id: int, form_id: int):
    """The text exactly as a patient will see it (a draft) or saw it (a published version)."""
    form_version = access_form_version_by_id(request.user, purpose_id, form_id)
    context = {
        "purpose": form_version.purpose,
        "form_version": form_version,
        "sections": form_sections(form_version),
        "readability": _readability(form_version),
        "edit_url": reverse("consent:form_edit", kwargs={"purpose_id": purpose_id, "form_id": form_version.pk}),
    }
    return render(request, "consent/forms/form_preview.html", context)
