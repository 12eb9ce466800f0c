"""A patient's history on one page (/audit/patients/<id>/, audit:patient_history), for compliance officers and
administrators: every audit event that names the patient, and every message prepared for them with the audit
event that recorded its outcome. Messages are recorded per send batch (one event lists up to 200 deliveries),
not per patient, so this page joins the trail with the deliveries; it lives here, in the top layer, because
the audit app reads no other app. Viewing it is itself audited (R-SEC-AUDIT)."""
from collections import Counter

from django.shortcuts import render
from django.views.decorators.http import require_safe

from audit import actions
from audit import selectors as audit_selectors
from audit.permissions import access_audit_trail
from audit.presentation import cursor_param, event_rows
from audit.services import audit_record
from campaigns.models import Delivery
from campaigns.selectors.campaigns import delivery_history_list


@require_safe
def patient_history(request, patient_id: int):
    access_audit_trail(request.user)
    older_page = cursor_param(request, "before")
    page = audit_selectors.audit_patient_history(patient_id, before=older_page)
    audit_record(
        actor=request.user,
        action=actions.AUDIT_PATIENT_HISTORY_VIEWED,
        object_type="patient",
        object_id=patient_id,
        patient_id=patient_id,
    )
    counts: dict[str, int] = {}
    for event in page.events:
        counts[event.action] = counts.get(event.action, 0) + 1
    # The messages are shown on the first page only; "Older events" pages continue the event list.
    deliveries = delivery_history_list(patient_id=patient_id) if older_page is None else []
    by_status = Counter(row.delivery.status for row in deliveries)
    context = {
        "patient_id": patient_id,
        "page": page,
        "rows": event_rows(page.events),
        "counts": sorted(counts.items(), key=lambda item: (-item[1], item[0])),
        "staff_views": sum(1 for event in page.events if event.actor_id and event.action.startswith("patient.")),
        "deliveries": deliveries,
        # "messages" is the messages framework's name in every template: these are deliveries.
        "delivery_counts": [(label, by_status[status]) for status, label in Delivery.Status.choices if by_status[status]],
        "first_page": older_page is None,
        "status": audit_selectors.audit_chain_status(),
    }
    return render(request, "audit/patient_history.html", context)
