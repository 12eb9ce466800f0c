"""Authorization form versions: the one in force for a purpose, its translations (ADR 0026) and its history."""
from django.db.models import Count, QuerySet

from consent.models import AuthorizationForm, Language


def form_version_current(*, purpose_id: int) -> AuthorizationForm | None:
    """The version new signatures use, in English (the original every translation is linked to): the newest published
    one. Older published versions stay valid for those who signed them (R-AUTH-IMMUTABLE). What a campaign of the
    purpose may use (R-SEND-SCOPE) is read from it; its translations list the same patient fields."""
    return (
        AuthorizationForm.objects.select_related("purpose")
        .filter(purpose_id=purpose_id, status=AuthorizationForm.Status.PUBLISHED, language=Language.ENGLISH)
        .order_by("-version")
        .first()
    )


def form_version_translation(*, form: AuthorizationForm, language: str) -> AuthorizationForm | None:
    """The published translation of this English version into `language`, if there is one."""
    if language == Language.ENGLISH:
        return form
    return (
        AuthorizationForm.objects.select_related("purpose")
        .filter(translation_of=form, language=language, status=AuthorizationForm.Status.PUBLISHED)
        .first()
    )


def form_version_for_language(*, purpose_id: int, language: str) -> AuthorizationForm | None:
    """The current version a reader of `language` is offered: its published translation, else the English one."""
    current = form_version_current(purpose_id=purpose_id)
    if current is None:
        return None
    return form_version_translation(form=current, language=language) or current


def form_version_signable(*, purpose_id: int, form_id: int) -> AuthorizationForm | None:
    """The version `form_id` if a patient may sign it now: the current English version or a published translation
    of it. None for an older version, a draft or another purpose's."""
    current = form_version_current(purpose_id=purpose_id)
    if current is None:
        return None
    if current.pk == form_id:
        return current
    return (
        AuthorizationForm.objects.select_related("purpose")
        .filter(pk=form_id, translation_of=current, status=AuthorizationForm.Status.PUBLISHED)
        .first()
    )


def form_version_history_list(*, purpose_id: int) -> QuerySet[AuthorizationForm]:
    """Every version of a purpose's form, newest first (the English one before its translations), with how many
    authorizations were signed under it."""
    return (
        AuthorizationForm.objects.filter(purpose_id=purpose_id)
        .select_related("published_by", "created_by", "translation_of")
        .annotate(authorization_count=Count("authorizations"))
        .order_by("-version", "language")
    )
