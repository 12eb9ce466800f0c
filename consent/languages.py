"""Which language a patient reads a page in (issue 17, item 6).

LocaleMiddleware picks each request's language: the django_language cookie (set by the switcher), else the browser's
Accept-Language, else LANGUAGE_CODE. A patient who arrives from a link of ours (an invitation, an unsubscribe link) or
signs in is known, so their page follows their stored language (Patient.language) unless they chose one on this
device with the switcher; the cookie is then set so the next pages agree. Their mail always follows Patient.language
(consent.notifications): a message has no device to ask.
"""
from django.conf import settings
from django.utils import translation

from consent.models import Language


def language_chosen_on_device(request) -> str | None:
    chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
    return chosen if chosen in Language.values else None


def language_for_patient(request, patient_language: str) -> str:
    """The language of a page for a known patient: the one chosen on this device, else theirs."""
    return language_chosen_on_device(request) or (
        patient_language if patient_language in Language.values else Language.ENGLISH
    )


def language_activate(request, language: str) -> None:
    """Use `language` for the rest of this request (the templates' LANGUAGE_CODE follows)."""
    translation.activate(language)
    request.LANGUAGE_CODE = language


def language_remember(response, language: str):
    """Keep the language on this device for the pages that follow (the cookie LocaleMiddleware reads)."""
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )
    return response
