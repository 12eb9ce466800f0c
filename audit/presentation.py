"""The audit trail as HTML table rows, for the audit log and a patient's history (which campaigns composes)."""
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

LIST_PREVIEW = 8  # ids shown of a long list in details; the count says how many there are


def cursor_param(request, name: str) -> int | None:
    """A page cursor (an event id) from the query string; anything else is ignored."""
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


def event_rows(events) -> list[str]:
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
