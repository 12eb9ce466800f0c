"""Segment pages (issue 5, item 2): the list, the builder, and the live counts panel it refreshes.

Marketers, compliance officers and administrators use them. Counts only, never a patient: marketers see small
cells suppressed (R-SMALL-CELL, R-MIN-NECESSARY); compliance officers and administrators see exact counts.
Thin views: campaigns.segments validates, compiles, counts and saves (and audits).
"""
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from campaigns import segments
from campaigns.forms.segments import SegmentForm, initial_from_rules
from campaigns.permissions import access_segment_by_id, access_segments, count_policy_for
from campaigns.selectors import segments as segments_selectors
from campaigns.services.segments import segment_save
from consent.models import Purpose

LIST_LIMIT = 200


def _counts_context(user, *, rules, purpose) -> dict:
    """What the counts panel shows. Nothing about any single patient is in it."""
    if rules is None or purpose is None:
        return {"counts": None, "purpose": purpose}
    try:
        counts = segments_selectors.segment_counts(rules=rules, purpose_id=purpose.pk)
    except ValidationError as error:  # a stored tree that is no longer valid (e.g. edited in the admin)
        return {"counts": None, "purpose": purpose, "errors": error.messages}
    shown = segments_selectors.segment_counts_shown(counts, policy=count_policy_for(user))
    return {"counts": shown, "purpose": purpose}


@require_safe
def segment_list(request):
    access_segments(request.user)
    policy = count_policy_for(request.user)
    rows = []
    for segment in segments_selectors.segment_list()[:LIST_LIMIT]:
        try:
            matched = segments.segment_queryset(segment.rules).count()
        except ValidationError:
            rows.append((segment, "rules need correcting"))
            continue
        rows.append((segment, policy.count(matched)))
    return render(request, "campaigns/segments/list.html", {"rows": rows})


def _default_purpose():
    return Purpose.objects.order_by("name").first()


@require_http_methods(["GET", "HEAD", "POST"])
def segment_create(request):
    access_segments(request.user)
    return _builder(request, segment=None)


@require_http_methods(["GET", "HEAD", "POST"])
def segment_edit(request, segment_id: int):
    segment = access_segment_by_id(request.user, segment_id)
    return _builder(request, segment=segment)


def _builder(request, *, segment):
    unsupported = False
    if request.method == "POST":
        form = SegmentForm(request.POST)
        if form.is_valid():
            try:
                saved = segment_save(
                    actor=request.user,
                    segment_id=segment.pk if segment else None,
                    name=form.cleaned_data["name"],
                    rules=form.rules,
                )
            except ValidationError as error:
                form.add_error(None, error.messages)
            else:
                messages.success(request, f"Segment \u201c{saved.name}\u201d saved.")
                return redirect("campaigns:segment_edit", segment_id=saved.pk)
        purpose = form.cleaned_data.get("purpose") if hasattr(form, "cleaned_data") else None
        rules = form.rules
    else:
        purpose = _default_purpose()
        initial = {"purpose": purpose}
        rules = None
        if segment is not None:
            rules = segment.rules
            from_rules = initial_from_rules(segment.rules)
            unsupported = from_rules is None
            initial |= {"name": segment.name} | (from_rules or {})
        form = SegmentForm(initial=initial)
    context = {
        "errors": [],
        "form": form,
        "segment": segment,
        "unsupported": unsupported,
        **_counts_context(request.user, rules=rules, purpose=purpose),
    }
    return render(request, "campaigns/segments/builder.html", context)


@require_POST
def segment_counts(request):
    """The counts panel for the rules on the page as they are now (the builder posts here as they change).
    Nothing is saved; bad rules get their errors in the panel, never a 500."""
    access_segments(request.user)
    form = SegmentForm(request.POST)
    form.is_valid()
    # The name is not needed for counting; only the rules' errors matter here.
    errors = [error for error in form.non_field_errors()]
    purpose = form.cleaned_data.get("purpose")
    context = {"errors": errors}
    context |= _counts_context(request.user, rules=form.rules, purpose=purpose)
    return render(request, "campaigns/segments/_counts.html", context)
