"""Segment pages (issue 5, item 2): the list, the builder, and the live counts panel it refreshes.

Marketers, compliance officers and administrators use them. Counts only, never a patient: marketers see small
cells suppressed (R-SMALL-CELL, R-MIN-NECESSARY); compliance officers and administrators see exact counts.
Thin views: campaigns.segments validates, compiles, counts and saves (and audits).
"""
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

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
    shown = segments_selectors.segment_counts_shown_for(rules=rules, purpose_id=purpose.pk, policy=count_policy_for(user))
    if "errors" in shown:  # a stored tree that is no longer valid (e.g. edited in the admin)
        return {"counts": None, "purpose": purpose, "errors": shown["errors"]}
    return {"counts": shown, "purpose": purpose}


@require_safe
def segment_list(request):
    """Every segment with its counts for the purpose chosen in the query string (?purpose=<id>; the first purpose
    by name otherwise): the same counts, suppressed the same way, as the segment's own page shows for that purpose."""
    access_segments(request.user)
    policy = count_policy_for(request.user)
    purpose = _purpose_from_query(request)
    rows = []
    for segment in segments_selectors.segment_list()[:LIST_LIMIT]:
        shown = (
            segments_selectors.segment_counts_shown_for(rules=segment.rules, purpose_id=purpose.pk, policy=policy)
            if purpose is not None
            else None
        )
        rows.append((segment, shown))
    return render(
        request,
        "campaigns/segments/list.html",
        {"rows": rows, "purpose": purpose, "purposes": Purpose.objects.order_by("name"), "exact": policy.exact},
    )


def _default_purpose():
    return Purpose.objects.order_by("name").first()


def _purpose_from_query(request):
    """The purpose the segment pages count coverage for: ?purpose=<id> (so that it is kept in links, reloads and the
    browser's history, never in the session), else the first by name. A value that names no purpose is ignored."""
    value = request.GET.get("purpose", "")
    if value.isdigit():
        purpose = Purpose.objects.filter(pk=int(value)).first()
        if purpose is not None:
            return purpose
    return _default_purpose()


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
                messages.success(request, _("Segment \u201c%(name)s\u201d saved.") % {"name": saved.name})
                chosen = form.cleaned_data.get("purpose")
                query = f"?purpose={chosen.pk}" if chosen is not None else ""
                return redirect(reverse("campaigns:segment_edit", args=[saved.pk]) + query)
        purpose = form.cleaned_data.get("purpose") if hasattr(form, "cleaned_data") else None
        rules = form.rules
    else:
        purpose = _purpose_from_query(request)
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
