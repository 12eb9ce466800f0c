"""Authorization form versions: the one in force for a purpose and its history."""
from django.db.models import Count, QuerySet

from consent.models import AuthorizationForm


def form_version_current(*, purpose_id: int) -> AuthorizationForm | None:
    """The version new signatures use: the newest published one. Older published versions stay valid for
    those who signed them (R-AUTH-IMMUTABLE)."""
    return (
        AuthorizationForm.objects.select_related("purpose")
        .filter(purpose_id=purpose_id, status=AuthorizationForm.Status.PUBLISHED)
        .order_by("-version")
        .first()
    )


def form_version_history_list(*, purpose_id: int) -> QuerySet[AuthorizationForm]:
    """Every version of a purpose's form, newest first, with how many authorizations were signed under it."""
    return (
        AuthorizationForm.objects.filter(purpose_id=purpose_id)
        .select_related("published_by", "created_by")
        .annotate(authorization_count=Count("authorizations"))
        .order_by("-version")
    )
