"""The audit trail's pages for compliance officers and administrators (marketers and everyone else: 404).

Viewing: the log itself is not audited page by page (it holds ids and codes, no PHI, and recording every
page turn would bury the trail in its own reading), but any view of one patient's activity is: the patient
history page, and the log filtered by a patient. Exports are audited by the reports that make them.
"""
from django.http import QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from audit import selectors
from audit.forms import AuditFilterForm
from audit.permissions import access_audit_trail
from audit.services import audit_record

LIST_PREVIEW = 8  # ids shown of a long list in details; the count says how many there are


def _cursor(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else None


def _detail_text(value) -> str:
    if isinstance(value, list):
        shown = ", ".join(_detail_text(item) for item in value[:LIST_PREVIEW])
        return f"{shown}, … ({len(value)} in all)" if len(value) > LIST_PREVIEW else shown
    if isinstance(value, dict):
        return "; ".join(f"{key} {_detail_text(item)}" for key, item in value.items())
    if value is None:
        return "—"
    if value is True or value is False:
        return "yes" if value else "no"
    return str(value)


def _link_pattern(name: str) -> str:
    """A URL pattern with one integer argument as a format string, reversed once per page, not once per row."""
    return reverse(name, args=[987654321]).replace("987654321", "{}")


def _rows(events) -> list[str]:
    """The table rows as HTML, every value escaped here. Built in Python rather than in a template loop: a
    page is 50 rows of eight cells, and Django's template engine resolving that many lookups cost more than
    the page's queries (measured with bench/audit_scale.py)."""
    campaign_url, history_url = _link_pattern("campaigns:detail"), _link_pattern("audit:patient_history")
    rows = []
    for event in events:
        if event.object_type == "campaign" and event.object_id.isdigit():
            thing = f'<a href="{campaign_url.format(event.object_id)}">campaign #{event.object_id}</a>'
        elif event.object_type:
            thing = escape(f"{event.object_type.replace('_', ' ')} #{event.object_id}" if event.object_id
                           else event.object_type)
        else:
            thing = "—"
        patient = (
            f'<a href="{history_url.format(event.patient_id)}" title="This patient’s history">#{event.patient_id}</a>'
            if event.patient_id else "—"
        )
        if event.details:
            items = "".join(
                f"<li><b>{escape(key)}</b> {escape(_detail_text(value))}</li>" for key, value in event.details.items()
            )
            details = f'<ul class="details">{items}</ul>'
        else:
            details = "—"
        origin = escape(event.ip or "—")
        if event.request_id:
            origin += f'<br><span title="Request id {escape(event.request_id)}">req. {escape(event.request_id[:8])}</span>'
        if event.sequence is not None:
            sequence = f'<span title="Hash {escape(event.hash)}">{event.sequence}</span>'
        else:
            sequence = '<span class="help" title="Committed; the sealer chains it within seconds">pending</span>'
        actor = f"{escape(event.actor.email)}<br>" if event.actor_id else ""
        when = timezone.localtime(event.occurred_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        rows.append(mark_safe(  # noqa: S308 - every value above is escaped or a number
            f'<tr><td class="when">{escape(when)}</td><td>{actor}<span class="help">{escape(event.actor_role)}</span>'
            f"</td><td><code>{escape(event.action)}</code></td><td>{thing}</td><td>{patient}</td><td>{details}</td>"
            f'<td><span class="help">{origin}</span></td><td class="seq">{sequence}</td></tr>'
        ))
    return rows


def _options(bound_field) -> list[tuple[str, str, bool]]:
    current = str(bound_field.value() or "")
    return [(str(value), label, str(value) == current) for value, label in bound_field.field.choices]


def _query_without_cursor(request) -> str:
    query = QueryDict(mutable=True)
    for key, values in request.GET.lists():
        if key not in ("before", "after"):
            query.setlist(key, values)
    return query.urlencode()


@require_GET
def audit_log(request):
    access_audit_trail(request.user)
    form = AuditFilterForm(
        request.GET or None, actors=selectors.audit_actor_list(), actions=selectors.audit_action_list()
    )
    filters = form.filters() if request.GET else selectors.AuditFilters()
    page = selectors.audit_event_page(filters, before=_cursor(request, "before"), after=_cursor(request, "after"))
    if filters.patient_id is not None:
        audit_record(
            actor=request.user,
            action="audit.log_viewed",
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
        "rows": _rows(page.events),
        "query": _query_without_cursor(request),
        "status": selectors.audit_chain_status(),
    }
    return render(request, "audit/log.html", context)


@require_GET
def patient_history(request, patient_id: int):
    access_audit_trail(request.user)
    page = selectors.audit_patient_history(patient_id, before=_cursor(request, "before"))
    audit_record(
        actor=request.user,
        action="audit.patient_history_viewed",
        object_type="patient",
        object_id=patient_id,
        patient_id=patient_id,
    )
    counts: dict[str, int] = {}
    for event in page.events:
        counts[event.action] = counts.get(event.action, 0) + 1
    context = {
        "patient_id": patient_id,
        "page": page,
        "rows": _rows(page.events),
        "counts": sorted(counts.items(), key=lambda item: (-item[1], item[0])),
        "staff_views": sum(1 for event in page.events if event.actor_id and event.action.startswith("patient.")),
        "status": selectors.audit_chain_status(),
    }
    return render(request, "audit/patient_history.html", context)
