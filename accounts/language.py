"""The staff member's language (issue 17, item 6; ADR 0030): chosen with the switch in every page's header, kept for
their account (accounts.models.StaffPreference) and in this browser (Django's django_language cookie).

- The switch posts here. Anyone may use it (the sign-in page has it too): for an anonymous visitor it is Django's
  set_language, a cookie and back to the page; for a signed-in staff member it also stores the choice.
- Signing in copies the stored choice into the session; StaffLanguageMiddleware, right after LocaleMiddleware, makes
  it the language of each request of that session, so the choice follows the person to a new device.
- Mail the product sends a staff member is written in their stored language (staff_language)."""
from django.conf import settings
from django.utils import translation
from django.views.decorators.http import require_POST
from django.views.i18n import set_language

from accounts.models import StaffPreference

SESSION_KEY = "staff_language"
_LANGUAGES = {code for code, _name in settings.LANGUAGES}


def _stored_language(user_id: int) -> str | None:
    return StaffPreference.objects.filter(user_id=user_id).values_list("language", flat=True).first()


def staff_language(user_id: int) -> str:
    """The language to write to this staff member in: their stored choice, else the product's default."""
    return _stored_language(user_id) or settings.LANGUAGE_CODE


def staff_language_set(*, user_id: int, language: str) -> None:
    if language not in _LANGUAGES:
        raise ValueError(language)
    StaffPreference.objects.update_or_create(user_id=user_id, defaults={"language": language})


@require_POST
def language_choose(request):
    """The header's language switch (POST with CSRF): back to the page it was on, in the language chosen."""
    response = set_language(request)
    language = request.POST.get("language")
    if language in _LANGUAGES and request.user.is_authenticated:
        staff_language_set(user_id=request.user.pk, language=language)
        request.session[SESSION_KEY] = language
    return response


def language_session_begin(request, user) -> None:
    """At sign-in: this session speaks the language the staff member chose before, on whatever device."""
    language = _stored_language(user.pk)
    if language:
        request.session[SESSION_KEY] = language


class StaffLanguageMiddleware:
    """After LocaleMiddleware: a signed-in staff member's stored language wins over the browser's and the cookie."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        language = session.get(SESSION_KEY) if session is not None else None
        if language in _LANGUAGES and language != getattr(request, "LANGUAGE_CODE", None):
            translation.activate(language)
            request.LANGUAGE_CODE = language
        return self.get_response(request)
