"""Who may see and do what with a journey. One policy, used by every journey view (the services check again).

Every staff role may open a journey, build one and read its results (marketers with small cells suppressed:
campaigns.permissions.count_policy_for). Reviewing, approving, rejecting, pausing, resuming and stopping belong to
compliance officers and administrators; to anyone else the review page does not exist (404), and "missing" and
"not yours" give the same 404."""
from __future__ import annotations

from accounts.roles import is_staff_member, sees_patient_evidence
from audit.exceptions import NotFound
from campaigns.permissions import may_control_sending
from journeys.models import Journey


def access_journeys(user) -> None:
    if not is_staff_member(user):
        raise NotFound


def access_journey_by_id(user, journey_id: int) -> Journey:
    access_journeys(user)
    journey = (
        Journey.objects.select_related("purpose", "created_by", "live_version").filter(pk=journey_id).first()
    )
    if journey is None:
        raise NotFound
    return journey


def access_journey_review_by_id(user, journey_id: int) -> Journey:
    """The review page: compliance officers and administrators only."""
    if not sees_patient_evidence(user):
        raise NotFound
    return access_journey_by_id(user, journey_id)


def access_journey_control_by_id(user, journey_id: int) -> Journey:
    """Pausing, resuming and stopping: compliance officers and administrators; to anyone else, a 404."""
    if not may_control_journey(user):
        raise NotFound
    return access_journey_by_id(user, journey_id)


def may_control_journey(user) -> bool:
    """Pausing, resuming and stopping: the same people who control a campaign's sending."""
    return may_control_sending(user)


def may_review_journey(user) -> bool:
    return sees_patient_evidence(user)
