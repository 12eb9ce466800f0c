"""`{% load when %}`: every instant a person reads, in the organisation's zone (settings.TIME_ZONE) with the zone
named, the same way on every page (issue 17: one instant was written in three zones).

    {{ campaign.launched_at|when }}           Dec 7, 2026, 8:05 AM CST
    {{ campaign.launched_at|when:"date" }}    Dec 7, 2026
    {{ event.occurred_at|when:"seconds" }}    Dec 7, 2026, 8:05:09 AM CST
    {% org_zone %}                            Central Time (America/Chicago)

Month names and the order of day and month follow the active language (English, Spanish). A naive or missing value gives "" rather
than a guess."""

from datetime import datetime
from zoneinfo import ZoneInfo

from django import template
from django.conf import settings
from django.utils import dateformat, timezone, translation
from django.utils.translation import gettext_lazy as _

register = template.Library()

_FORMATS = {
    "": "M j, Y, g:i A T",
    "date": "M j, Y",
    "seconds": "M j, Y, g:i:s A T",
    "time": "g:i A T",
}
# In Spanish the day comes first and month names are lower case: "7 dic 2026, 8:05 AM CST", "7 de diciembre de 2026"
# (the signed PDF's dates read the same way).
_FORMATS_BY_LANGUAGE = {
    "es": {
        "": "j b Y, g:i A T",
        "date": r"j \d\e F \d\e Y",
        "seconds": "j b Y, g:i:s A T",
        "time": "g:i A T",
    },
}

# The zones organisations in the United States run on, by the name a person knows them by.
_ZONE_NAMES = {
    "America/New_York": _("Eastern Time"),
    "America/Detroit": _("Eastern Time"),
    "America/Chicago": _("Central Time"),
    "America/Denver": _("Mountain Time"),
    "America/Phoenix": _("Mountain Time (no daylight saving)"),
    "America/Los_Angeles": _("Pacific Time"),
    "America/Anchorage": _("Alaska Time"),
    "Pacific/Honolulu": _("Hawaii Time"),
    "America/Puerto_Rico": _("Atlantic Time"),
    "UTC": _("Coordinated Universal Time"),
}


def organisation_zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def organisation_zone_label() -> str:
    name = settings.TIME_ZONE
    known = _ZONE_NAMES.get(name)
    return f"{known} ({name})" if known else name


@register.filter(name="when")
def when(value, style: str = "") -> str:
    if not isinstance(value, datetime) or timezone.is_naive(value):
        return ""
    local = value.astimezone(organisation_zone())
    formats = _FORMATS_BY_LANGUAGE.get((translation.get_language() or "en").split("-")[0], _FORMATS)
    return dateformat.format(local, formats.get(style, formats[""]))


@register.simple_tag(name="org_zone")
def org_zone() -> str:
    return organisation_zone_label()
