"""Enrolments ended by what happens outside the journey."""
from __future__ import annotations

from django.utils import timezone

from audit import actions
from audit.services import audit_record
from journeys.models import Enrolment, ExitReason


def enrolments_end_on_revocation(*, patient_id: int, purpose_id: int) -> list[int]:
    """Called inside every revocation's transaction (HIPAAMAIL_REVOCATION_HOOKS, consent.services.authorizations):
    the patient's running enrolments in every journey of that purpose end at the revocation's commit
    (R-REVOKE-ANYTIME, issue 14 item 2). Their queued messages are blocked by the sender, which checks coverage at
    the moment of sending. Returns the ids of the enrolments ended, audited as one event per journey.

    Lock order: the revocation holds the authorizations; the enrolment rows come after them here, and the scanner
    never locks authorizations, so the two cannot deadlock."""
    running = list(
        Enrolment.objects.select_for_update()
        .filter(patient_id=patient_id, journey__purpose_id=purpose_id, status=Enrolment.Status.ACTIVE)
        .order_by("pk")
        .values_list("id", "journey_id")
    )
    if not running:
        return []
    Enrolment.objects.filter(pk__in=[pk for pk, _ in running]).update(
        status=Enrolment.Status.ENDED, ended_at=timezone.now(), exit_reason=ExitReason.REVOKED, step_started_at=None
    )
    by_journey: dict[int, list[int]] = {}
    for pk, journey_id in running:
        by_journey.setdefault(journey_id, []).append(pk)
    for journey_id, ids in sorted(by_journey.items()):
        audit_record(
            actor=None,
            actor_role=actions.SYSTEM,
            action=actions.JOURNEY_ENROLMENTS_EXITED,
            object_type="journey",
            object_id=journey_id,
            patient_id=patient_id,
            details={"reason": ExitReason.REVOKED.value, "ended": ids},
        )
    return [pk for pk, _ in running]
