"""The organisation's frequency cap (ADR 0016): at most HIPAAMAIL_FREQUENCY_CAP marketing messages per patient in
HIPAAMAIL_FREQUENCY_CAP_DAYS days, campaigns and journeys together. A message counts once it is queued for the
sender or sent. Treatment and operations messages (a refill reminder, a visit reminder) are neither counted nor
capped: a patient must not miss a reminder about their care because they had a busy marketing week.

A fatigue rule, not consent: it is decided when a campaign's audience is materialised and when a journey step
comes due, and the delivery records it (`frequency_cap`). The one predicate still decides at the moment of sending.
"""
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.models import Delivery
from consent.models import Purpose

_COUNTED = (Delivery.Status.QUEUED, Delivery.Status.SENT)


def frequency_cap_applies(purpose: Purpose) -> bool:
    return settings.HIPAAMAIL_FREQUENCY_CAP > 0 and purpose.kind == Purpose.Kind.MARKETING


def _recent_marketing() -> QuerySet[Delivery]:
    since = timezone.now() - timedelta(days=settings.HIPAAMAIL_FREQUENCY_CAP_DAYS)
    return Delivery.objects.filter(
        campaign__purpose__kind=Purpose.Kind.MARKETING, status__in=_COUNTED, created_at__gte=since
    )


def recent_marketing_counts(*, patient_ids: Iterable[int]) -> dict[int, int]:
    """How many marketing messages each of these patients had in the cap's period (absent: none)."""
    patient_ids = list(patient_ids)
    if not patient_ids:
        return {}
    return dict(
        _recent_marketing()
        .filter(patient_id__in=patient_ids)
        .values("patient_id")
        .annotate(n=Count("id"))
        .values_list("patient_id", "n")
    )


def recent_marketing_count() -> Coalesce:
    """A patient queryset's annotation: their marketing messages in the cap's period (for the launch's SQL)."""
    counted = (
        _recent_marketing()
        .filter(patient_id=OuterRef("id"))
        .order_by()
        .values("patient_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counted), 0)
