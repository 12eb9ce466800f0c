from django.conf import settings
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.utils.translation import gettext_lazy as _

from accounts import roles
from campaigns.notices import notice_unread_count
from campaigns.selectors.review_queue import ReviewItem, campaign_review_items, review_queue_merge
from journeys.selectors.journeys import journey_review_list


def staff_roles(request):
    user = getattr(request, "user", None)
    names = roles.roles_of(user) if user is not None else set()
    return {
        "user_roles": sorted(names),
        "user_role_labels": [roles.LABELS[name] for name in sorted(names)],
        "is_marketer": roles.MARKETER in names,
        "is_compliance": roles.COMPLIANCE_OFFICER in names,
        "is_administrator": roles.ADMINISTRATOR in names,
        "organisation_name": settings.HIPAAMAIL_ORGANISATION_NAME,
    }


def review_counts(request):
    """The review loop in the navigation (issue 17): the unread notices of any staff member, and for compliance
    officers and administrators the "needs your review" queue (campaigns and journey versions waiting, oldest
    first) and its count. The queue is put together here because it reads both campaigns and journeys, and only
    the top of the house may import both (campaigns.views.review.review_queue shows it). Computed once a request,
    only when a page uses it."""
    user = getattr(request, "user", None)
    if user is None or not roles.is_staff_member(user) or not getattr(user, "is_verified", lambda: False)():
        return {}

    def queue() -> list:
        journeys = [
            ReviewItem(
                kind="journey",
                kind_label=str(_("Journey version")),
                name=f"{version.journey.name} · v{version.number}",
                purpose=version.journey.purpose.name,
                submitted_by=version.created_by.email,
                submitted_at=version.submitted_at,
                url=reverse("journeys:review", args=[version.journey_id]),
                own=version.created_by_id == user.pk,
            )
            for version in journey_review_list()
        ]
        return review_queue_merge(campaign_review_items(viewer=user), journeys)

    context = {"notice_unread_count": SimpleLazyObject(lambda: notice_unread_count(user=user))}
    if roles.sees_patient_evidence(user):
        context["review_queue"] = SimpleLazyObject(queue)
    return context
