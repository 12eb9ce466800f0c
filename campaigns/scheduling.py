"""Times for scheduled campaigns: entered as a wall-clock time in an IANA time zone, stored in UTC beside the zone's
name (Campaign.scheduled_for, Campaign.schedule_timezone), and shown back in both:
"Tue 1 Dec 2026, 09:00 America/New_York (14:00 UTC)".

A wall-clock time that does not exist in its zone (the hour skipped when clocks go forward) is refused rather
than silently moved; an ambiguous one (the hour repeated when clocks go back) is the first of the two, and the
UTC time shown beside it says which.
"""
import zoneinfo
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import dateformat, timezone
from django.utils.translation import gettext, ngettext

# The zones offered first; any other valid IANA name is accepted too (the browser's own zone, say).
COMMON_TIMEZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
    "UTC",
)


def timezone_is_known(name: str) -> bool:
    return bool(name) and name in zoneinfo.available_timezones()


def timezone_choices(*extra: str) -> list[tuple[str, str]]:
    """The zones to offer: the common ones, the site's own, and any valid extra (the one already chosen)."""
    names = [*COMMON_TIMEZONES]
    for name in (settings.TIME_ZONE, *extra):
        if timezone_is_known(name) and name not in names:
            names.append(name)
    return [(name, name.replace("_", " ")) for name in names]


def schedule_local_to_utc(*, local: datetime, timezone_name: str) -> datetime:
    """The UTC instant of a naive wall-clock time in `timezone_name`. Refuses a time the zone skips."""
    if not timezone_is_known(timezone_name):
        raise ValidationError(gettext("Choose a time zone from the list."))
    zone = zoneinfo.ZoneInfo(timezone_name)
    aware = local.replace(tzinfo=zone, fold=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local:
        raise ValidationError(
            gettext("%(time)s does not exist in %(zone)s: the clocks go forward then. Choose another time.")
            % {"time": dateformat.format(local, "j M Y, H:i"), "zone": timezone_name}
        )
    return instant


def schedule_time_check(send_at: datetime, *, now: datetime | None = None) -> None:
    """A campaign is scheduled for the future only: a time that has passed is refused with a clear message."""
    now = now or timezone.now()
    if send_at <= now:
        raise ValidationError(gettext("That time has already passed. Choose a time in the future, or use “Send now”."))


def schedule_display(when: datetime | None, timezone_name: str) -> str:
    """"Tue 1 Dec 2026, 09:00 America/New_York (14:00 UTC)"; the UTC date is added when it differs."""
    if when is None:
        return ""
    name = timezone_name if timezone_is_known(timezone_name) else "UTC"
    local = when.astimezone(zoneinfo.ZoneInfo(name))
    utc = when.astimezone(UTC)
    shown = f"{local:%a} {local.day} {local:%b %Y, %H:%M} {name}"
    if name == "UTC":
        return shown
    if utc.date() == local.date():
        return f"{shown} ({utc:%H:%M} UTC)"
    return f"{shown} ({utc:%a} {utc.day} {utc:%b}, {utc:%H:%M} UTC)"


def schedule_default_local(*, timezone_name: str, ahead: timedelta = timedelta(hours=1)) -> str:
    """A suggested value for the datetime input: the next whole hour at least `ahead` from now, in the zone."""
    zone = zoneinfo.ZoneInfo(timezone_name if timezone_is_known(timezone_name) else "UTC")
    local = (timezone.now() + ahead).astimezone(zone).replace(minute=0, second=0, microsecond=0)
    return f"{local:%Y-%m-%dT%H:%M}"


def schedule_relative(when: datetime | None, *, now: datetime | None = None) -> str:
    """"in 5 minutes", "in 3 hours", "in 2 days", "in 4 months", "in 3 years" (rounded down, at least a minute);
    "" for none or the past."""
    if when is None:
        return ""
    seconds = (when - (now or timezone.now())).total_seconds()
    if seconds <= 0:
        return ""
    minutes = max(1, int(seconds // 60))
    if minutes < 120:
        return ngettext("in %(n)d minute", "in %(n)d minutes", minutes) % {"n": minutes}
    hours = minutes // 60
    if hours < 48:
        return ngettext("in %(n)d hour", "in %(n)d hours", hours) % {"n": hours}
    days = hours // 24
    if days < 60:
        return ngettext("in %(n)d day", "in %(n)d days", days) % {"n": days}
    if days < 730:
        return ngettext("in %(n)d month", "in %(n)d months", days // 30) % {"n": days // 30}
    return ngettext("in %(n)d year", "in %(n)d years", days // 365) % {"n": days // 365}


def schedule_entered_display(when: datetime | None, timezone_name: str) -> str:
    """The wall-clock time a schedule was entered in, when its zone is not the organisation's own:
    "9:00 AM America/New_York, as entered"; "" otherwise (the page shows the instant in the organisation's zone)."""
    if when is None or not timezone_is_known(timezone_name) or timezone_name == settings.TIME_ZONE:
        return ""
    local = when.astimezone(zoneinfo.ZoneInfo(timezone_name))
    return gettext("%(time)s %(zone)s, as entered") % {
        "time": dateformat.format(local, "M j, g:i A"),
        "zone": timezone_name,
    }
