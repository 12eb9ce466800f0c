"""Reads of the care events systems report (consent.events holds their vocabulary)."""
from __future__ import annotations

from django.db.models import QuerySet

from consent.models import PatientEvent


def patient_event_list(*, patient_id: int | None = None, type: str | None = None) -> QuerySet[PatientEvent]:
    """Events, newest first (by when they happened, then by arrival), of one patient and/or one type."""
    events = PatientEvent.objects.all()
    if patient_id is not None:
        events = events.filter(patient_id=patient_id)
    if type is not None:
        events = events.filter(type=type)
    return events.order_by("-occurred_at", "-id")
