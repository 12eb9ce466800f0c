"""`{% load patient_pages %}`: what every patient page may need.

    {% call_us %}   "call us at 217-555-0100 (Monday to Friday, 8 am to 6 pm)": the organisation's number as a tel: link
                    and the hours someone answers it, in the page's language (HIPAAMAIL_ORGANISATION_PHONE and _HOURS,
                    _HOURS_ES), wherever a page asks a patient to call (issue 17, item 5).
"""
import re

from django import template
from django.conf import settings
from django.utils import translation

register = template.Library()


def organisation_hours(language: str | None = None) -> str:
    language = language or translation.get_language() or "en"
    if language.startswith("es") and settings.HIPAAMAIL_ORGANISATION_HOURS_ES:
        return settings.HIPAAMAIL_ORGANISATION_HOURS_ES
    return settings.HIPAAMAIL_ORGANISATION_HOURS


@register.inclusion_tag("consent/portal/_call_us.html")
def call_us() -> dict:
    phone = settings.HIPAAMAIL_ORGANISATION_PHONE
    digits = re.sub(r"[^\d+]", "", phone)
    if digits and not digits.startswith("+") and len(digits) == 10:
        digits = "+1" + digits  # a North American number written without its country code
    return {"phone": phone, "tel": digits, "hours": organisation_hours()}
