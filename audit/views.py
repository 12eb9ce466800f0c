"""The audit trail's pages for compliance officers and administrators (marketers and everyone else: 404).

Viewing: the log itself is not audited page by page (it holds ids and codes, no PHI, and recording every
page turn would bury the trail in its own reading), but any view of one patient's activity is: the log
filtered by a patient here, and the patient history page (campaigns.views.history: it joins this trail with
the messages the patient received, so it lives in the top layer). Exports are audited by the reports.
"""
from django.contrib import messages
from django.http import QueryDict
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST, require_safe

from audit import actions, selectors, sentences
from audit.forms import AuditFilterForm
from audit.permissions import access_audit_trail
from audit.presentation import cursor_param, event_rows
from audit.services import audit_chain_verify_now, audit_record


def _options(bound_field) -> list[tuple[str, str, bool]]:
    current = str(bound_field.value() or "")
    return [(str(value), label, str(value) == current) for value, label in bound_field.field.choices]


def _query_without_cursor(request) -> str:
    query = QueryDict(mutable=True)
    for key, values in request.GET.lists():
        if key not in ("before", "after"):
            query.setlist(key, values)
    return query.urlencode()


@require_safe
def audit_log(request):
    access_audit_trail(request.user)
    form = AuditFilterForm(
        request.GET or None,
        actors=selectors.audit_actor_list(),
        actions=selectors.audit_action_list(),
        object_types=selectors.audit_object_type_list(),
    )
    filters = form.filters() if request.GET else selectors.AuditFilters()
    page = selectors.audit_event_page(filters, before=cursor_param(request, "before"), after=cursor_param(request, "after"))
    if filters.patient_id is not None:
        audit_record(
            actor=request.user,
            action=actions.AUDIT_LOG_VIEWED,
            object_type="patient",
            object_id=filters.patient_id,
            patient_id=filters.patient_id,
            details={"filtered_by": sorted(key for key, value in vars(filters).items() if value not in (None, ""))},
        )
    context = {
        "form": form,
        # The two long choice lists as plain (value, label, selected) triples: Django's select widget renders a
        # sub-template per option, which at 60 options costs more than the page's queries.
        "actor_options": _options(form["actor"]),
        "action_options": _options(form["action"]),
        "filtered": not filters.is_empty(),
        "page": page,
        "rows": event_rows(page.events, viewer=request.user),
        "query": _query_without_cursor(request),
        "status": selectors.audit_chain_status(),
    }
    return render(request, "audit/log.html", context)


@require_POST
def audit_verify_now(request):
    """Walk the whole chain now (R-SEC-INTEGRITY) and say what was found; the chain status box shows it too."""
    access_audit_trail(request.user)
    verification = audit_chain_verify_now(actor=request.user)
    result = verification.result
    if verification.ok:
        took = (
            _("under a second") if verification.seconds < 1
            else _("%(seconds).0f seconds") % {"seconds": verification.seconds}
        )
        messages.success(
            request,
            ngettext(
                "The audit chain is intact: %(count)s entry checked in %(took)s.",
                "The audit chain is intact: %(count)s entries checked in %(took)s.",
                result.events,
            ) % {"count": f"{result.events:,}", "took": took},
        )
    elif result.first_break is not None:
        messages.error(
            request,
            _("The audit chain is broken at entry %(sequence)s: %(meaning)s. The compliance officers and "
              "administrators were emailed.") % {
                "sequence": result.first_break.sequence,
                "meaning": sentences.break_meaning(result.first_break.reason),
            },
        )
    else:
        failed = sum(check.mismatches for check in verification.checks if not check.ok)
        messages.error(
            request,
            _("The audit chain is intact, but %(count)s stored record(s) differ from what the chain recorded. "
              "The compliance officers and administrators were emailed.") % {"count": failed},
        )
    return redirect("audit:log")
