"""The dates on a patient's record a journey may trigger on (Trigger.DATE): each with a label for the builder.
A date trigger enrols a patient on the day `field + offset_days` falls on in the organisation's time zone, once
per date value (a new refill date is a new trigger)."""
from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class DateField:
    name: str
    label: str  # translated when it is read (gettext_lazy)
    description: str


DATE_FIELDS: dict[str, DateField] = {
    field.name: field
    for field in (
        DateField("last_visit", _("Last visit"), "The day of the patient's last visit, from the EHR or the CSV import."),
        DateField(
            "refill_due",
            _("Refill due"),
            "When the patient's next refill or supply replacement is due, from the EHR or the CSV import.",
        ),
    )
}


def date_trigger_label(field: str, offset_days: int) -> str:
    """"7 days before Refill due", "30 days after Last visit", "On Refill due"."""
    label = DATE_FIELDS[field].label if field in DATE_FIELDS else field
    if offset_days == 0:
        return gettext("On %(date)s") % {"date": label}
    days = abs(offset_days)
    if offset_days < 0:
        words = ngettext("%(count)s day before %(date)s", "%(count)s days before %(date)s", days)
    else:
        words = ngettext("%(count)s day after %(date)s", "%(count)s days after %(date)s", days)
    return words % {"count": days, "date": label}
