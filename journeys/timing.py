"""When a journey's steps happen in a patient's own day (ADR 0016): their time zone (Patient.time_zone, else the
organisation's TIME_ZONE), the organisation's quiet hours (HIPAAMAIL_QUIET_HOURS, "21:00-08:00"), a step's wait
(minutes, which the tests shorten through HIPAAMAIL_JOURNEY_MINUTE_SECONDS) and "until a local time of day".

Local times are resolved with zoneinfo: a time the clocks skip (the spring-forward hour) is taken as the instant
just after the gap, and a repeated one (the fall-back hour) as its first occurrence.
"""
from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import ngettext

_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # across midnight (21:00-08:00)

    def label(self) -> str:
        return f"{self.start:%H:%M} to {self.end:%H:%M}"


def quiet_hours_parse(value: str) -> QuietHours | None:
    """"21:00-08:00" -> QuietHours; "" -> None (no quiet hours). Anything else is a configuration error."""
    if not value:
        return None
    match = _HOURS.match(value.strip())
    if not match:
        raise ImproperlyConfigured('QUIET_HOURS is "HH:MM-HH:MM" (e.g. "21:00-08:00") or empty.')
    a, b, c, d = (int(part) for part in match.groups())
    if (a, b) == (c, d):
        raise ImproperlyConfigured("QUIET_HOURS must not start and end at the same time.")
    return QuietHours(time(a, b), time(c, d))


def quiet_hours() -> QuietHours | None:
    return quiet_hours_parse(settings.HIPAAMAIL_QUIET_HOURS)


@functools.lru_cache(maxsize=512)
def patient_zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone of a patient whose time_zone is `name` ("" or unknown: the organisation's)."""
    try:
        return zoneinfo.ZoneInfo(name) if name else zoneinfo.ZoneInfo(settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def _at_local(day, moment: time, zone: zoneinfo.ZoneInfo) -> datetime:
    """The UTC instant of `day` at `moment` in `zone`; a time inside a spring-forward gap moves past the gap."""
    local = datetime.combine(day, moment).replace(tzinfo=zone, fold=0)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        instant = local.replace(fold=1).astimezone(UTC)
    return instant


def next_local_time(after: datetime, moment: time, zone: zoneinfo.ZoneInfo) -> datetime:
    """The first instant at or after `after` that reads `moment` on the clock in `zone`."""
    local_day = after.astimezone(zone).date()
    for offset in range(3):
        candidate = _at_local(local_day + timedelta(days=offset), moment, zone)
        if candidate >= after:
            return candidate
    raise AssertionError("unreachable: a local time recurs within three days")


def quiet_until(at: datetime, zone: zoneinfo.ZoneInfo, hours: QuietHours | None) -> datetime | None:
    """When the quiet hours that `at` falls in end for a patient in `zone`; None when `at` is not quiet."""
    if hours is None or not hours.contains(at.astimezone(zone).time()):
        return None
    return next_local_time(at, hours.end, zone)


def wait_duration(minutes: int) -> timedelta:
    return timedelta(seconds=minutes * settings.HIPAAMAIL_JOURNEY_MINUTE_SECONDS)


def wait_label(minutes: int) -> str:
    """"3 days", "2 hours", "90 minutes": a wait as a person reads it."""
    if minutes and minutes % 1440 == 0:
        days = minutes // 1440
        return ngettext("%(count)s day", "%(count)s days", days) % {"count": days}
    if minutes and minutes % 60 == 0:
        hours = minutes // 60
        return ngettext("%(count)s hour", "%(count)s hours", hours) % {"count": hours}
    return ngettext("%(count)s minute", "%(count)s minutes", minutes) % {"count": minutes}
