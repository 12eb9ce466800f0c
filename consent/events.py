"""The care events an EHR, CRM or practice-management system reports (issue 13), and the coded attributes each
accepts. Journeys (issue 14) trigger on these types, so a type, once published, keeps its meaning: add a new one
rather than change one.

Attributes are codes, never free text: each has a pattern (letters, digits and `.-_`, at most 40 characters), a
closed list of values, a calendar date, or a bounded whole number. A note typed into an EHR cannot pass any of
them, which keeps narrative PHI out of the events table by construction (R-NO-PHI-LEAK). Attributes are optional
unless the type lists them as required: a journey may only rely on a required one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from django.utils.translation import gettext, gettext_noop

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
TYPE_PATTERN = r"^[a-z][a-z_]*\.[a-z][a-z_]*$"
# The sender's own id of the event: printable, no spaces, so it can never carry a sentence.
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$"

# What a sender may put in an event's `attributes`: at most this many, all named in its type.
MAX_ATTRIBUTES = 12


class AttributeKind:
    CODE = "code"  # a string matching `pattern`
    CHOICE = "choice"  # one of `choices`
    DATE = "date"  # a calendar date, YYYY-MM-DD
    INTEGER = "integer"  # a whole number from `minimum` to `maximum`


@dataclass(frozen=True)
class Attribute:
    name: str
    label: str
    description: str
    kind: str = AttributeKind.CODE
    pattern: str = CODE_PATTERN
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    def accepts(self, value) -> bool:
        """Whether `value` (as decoded from JSON) is a valid value of this attribute."""
        if self.kind == AttributeKind.INTEGER:
            # bool is an int in Python, not a number in JSON.
            return (
                isinstance(value, int)
                and not isinstance(value, bool)
                and self.minimum <= value <= self.maximum
            )
        if not isinstance(value, str):
            return False
        if self.kind == AttributeKind.CHOICE:
            return value in self.choices
        if not re.fullmatch(self.pattern, value):
            return False
        if self.kind == AttributeKind.DATE:
            try:
                date.fromisoformat(value)
            except ValueError:
                return False
        return True

    def as_dict(self) -> dict:
        described = {"name": self.name, "label": self.label, "description": self.description, "kind": self.kind}
        if self.kind == AttributeKind.INTEGER:
            described |= {"minimum": self.minimum, "maximum": self.maximum}
        elif self.kind == AttributeKind.CHOICE:
            described["choices"] = list(self.choices)
        else:
            described["pattern"] = self.pattern
        return described


@dataclass(frozen=True)
class EventType:
    code: str
    label: str
    description: str
    attributes: tuple[str, ...]
    required: tuple[str, ...] = field(default=())


# Labels and descriptions in English, as the integration API's /events/types gives them; staff pages translate them
# where they show them (event_type_label, attribute_label, views.event_imports), from the consent catalogue.
_ATTRIBUTES = [
    Attribute(
        "appointment_type",
        gettext_noop("Appointment type"),
        gettext_noop(
            "The practice-management system's code for the kind of appointment (e.g. FOLLOWUP, NEWPT, "
            "CPAP-FIT)."
        ),
    ),
    Attribute(
        "appointment_date",
        gettext_noop("Appointment date"),
        gettext_noop("The day the appointment is (or was) for, YYYY-MM-DD, in the organisation's time zone."),
        kind=AttributeKind.DATE,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    ),
    Attribute(
        "cancel_reason",
        gettext_noop("Cancellation reason"),
        gettext_noop("Why the appointment was cancelled, as one of the listed codes."),
        kind=AttributeKind.CHOICE,
        choices=("patient_request", "provider", "no_show", "rescheduled", "weather", "other"),
    ),
    Attribute(
        "location_code",
        gettext_noop("Location"),
        gettext_noop("The code of the clinic, branch or service area (e.g. NORTH-01)."),
    ),
    Attribute(
        "specialty_code",
        gettext_noop("Specialty"),
        gettext_noop("The provider's specialty as a NUCC Health Care Provider Taxonomy code (e.g. 207RP1001X)."),
        pattern=r"^[0-9A-Z]{9}X$",
    ),
    Attribute(
        "procedure_code",
        gettext_noop("Procedure or item"),
        gettext_noop(
            "A CPT code (five characters, e.g. 95810) or a HCPCS Level II code (a letter and four digits, "
            "e.g. E0601)."
        ),
        pattern=r"^([0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})$",
    ),
    Attribute(
        "equipment_type",
        gettext_noop("Equipment type"),
        gettext_noop("The organisation's code for the kind of equipment (e.g. CPAP, WHEELCHAIR-MANUAL, NEB)."),
    ),
    Attribute(
        "supply_type",
        gettext_noop("Supply type"),
        gettext_noop("The organisation's code for a consumable supply (e.g. CPAP-MASK, CPAP-FILTER, TEST-STRIPS)."),
    ),
    Attribute(
        "quantity",
        gettext_noop("Quantity"),
        gettext_noop("How many items, a whole number from 1 to 9999."),
        kind=AttributeKind.INTEGER,
        minimum=1,
        maximum=9999,
    ),
    Attribute(
        "medication_code",
        gettext_noop("Medication"),
        gettext_noop("An RxNorm concept id (RXCUI, digits only, e.g. 197361)."),
        pattern=r"^[0-9]{1,10}$",
    ),
    Attribute(
        "days_supply",
        gettext_noop("Days' supply"),
        gettext_noop("How many days the dispensed medication or supply lasts, a whole number from 1 to 999."),
        kind=AttributeKind.INTEGER,
        minimum=1,
        maximum=999,
    ),
    Attribute(
        "program_code",
        gettext_noop("Program"),
        gettext_noop("The organisation's program code, as on the patient's record (e.g. DPP, CPAP-RESUPPLY)."),
    ),
]
ATTRIBUTES: dict[str, Attribute] = {attribute.name: attribute for attribute in _ATTRIBUTES}

_APPOINTMENT = ("appointment_type", "appointment_date", "location_code", "specialty_code")

_TYPES = [
    EventType(
        "appointment.booked",
        gettext_noop("Appointment booked"),
        gettext_noop(
            "An appointment was booked; occurred_at is when it was booked, appointment_date the day it is "
            "for."
        ),
        _APPOINTMENT,
    ),
    EventType(
        "appointment.completed",
        gettext_noop("Appointment completed"),
        gettext_noop("The patient attended an appointment."),
        _APPOINTMENT,
    ),
    EventType(
        "appointment.cancelled",
        gettext_noop("Appointment cancelled"),
        gettext_noop("A booked appointment was cancelled, or the patient did not come."),
        (*_APPOINTMENT, "cancel_reason"),
    ),
    EventType(
        "consultation.completed",
        gettext_noop("Consultation completed"),
        gettext_noop("A consultation (in person or by video) with a clinician took place."),
        ("specialty_code", "procedure_code", "location_code"),
    ),
    EventType(
        "home_visit.completed",
        gettext_noop("Home visit completed"),
        gettext_noop("A clinician or technician visited the patient at home."),
        ("procedure_code", "equipment_type", "location_code"),
    ),
    EventType(
        "procedure.performed",
        gettext_noop("Procedure performed"),
        gettext_noop("A procedure was performed (a sleep study, a fitting, a test)."),
        ("procedure_code", "specialty_code", "location_code"),
        required=("procedure_code",),
    ),
    EventType(
        "equipment.delivered",
        gettext_noop("Equipment delivered"),
        gettext_noop("Equipment was delivered to the patient; procedure_code is the item's HCPCS code when known."),
        ("equipment_type", "procedure_code", "quantity", "location_code"),
        required=("equipment_type",),
    ),
    EventType(
        "equipment.training_completed",
        gettext_noop("Equipment training completed"),
        gettext_noop("The patient (or a caregiver) was trained to use delivered equipment."),
        ("equipment_type", "location_code"),
        required=("equipment_type",),
    ),
    EventType(
        "medication.started",
        gettext_noop("Medication started"),
        gettext_noop("A medication was prescribed and first dispensed."),
        ("medication_code", "days_supply"),
        required=("medication_code",),
    ),
    EventType(
        "refill.due",
        gettext_noop("Refill due"),
        gettext_noop(
            "A refill of a medication or a replacement of a supply is due; occurred_at is when it became "
            "due."
        ),
        ("medication_code", "supply_type", "equipment_type", "days_supply"),
    ),
    EventType(
        "program.enrolled",
        gettext_noop("Enrolled in a program"),
        gettext_noop("The patient was enrolled in one of the organisation's programs."),
        ("program_code",),
        required=("program_code",),
    ),
    EventType(
        "program.completed",
        gettext_noop("Program completed"),
        gettext_noop("The patient completed (or left) one of the organisation's programs."),
        ("program_code",),
        required=("program_code",),
    ),
]
EVENT_TYPES: dict[str, EventType] = {event_type.code: event_type for event_type in _TYPES}


def event_type_label(code: str) -> str:
    """The type's label, or the code itself for a type no longer in the vocabulary."""
    event_type = EVENT_TYPES.get(code)
    return gettext(event_type.label) if event_type else code


def attribute_label(name: str) -> str:
    attribute = ATTRIBUTES.get(name)
    return gettext(attribute.label) if attribute else name


def vocabulary() -> list[dict]:
    """Every event type with the attributes it accepts, for senders (the API's /events/types)."""
    return [
        {
            "type": event_type.code,
            "label": event_type.label,
            "description": event_type.description,
            "attributes": [
                ATTRIBUTES[name].as_dict() | {"required": name in event_type.required}
                for name in event_type.attributes
            ],
        }
        for event_type in EVENT_TYPES.values()
    ]
