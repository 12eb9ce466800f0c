"""The staff patient record shows the care events systems reported (issue 13): newest first, the type's label, when,
the attributes as readable codes and the reporting system; an empty state otherwise; the events shown are named
in the view's audit event by id (R-SEC-AUDIT); marketers still get 404 (R-MIN-NECESSARY)."""
import re
from datetime import timedelta

import pytest
from django.template import Context, Template
from django.utils import timezone

from audit.models import AuditEvent
from consent.services.events import patient_event_record
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db


def _event(patient, event_id, type, attributes, days_ago, source="ehr-north"):
    event, _ = patient_event_record(
        source=source,
        source_event_id=event_id,
        patient_id=patient.pk,
        type=type,
        occurred_at=timezone.now() - timedelta(days=days_ago),
        attributes=attributes,
    )
    return event


def _section(page: str) -> str:
    return page.split('id="care-events"', 1)[1].split('<h2 id="invite"', 1)[0]


def test_patient_page_shows_care_events_newest_first_with_labels_codes_and_source(verified_client):
    patient = patient_make()
    delivered = _event(patient, "d-1", "equipment.delivered", {"equipment_type": "CPAP", "procedure_code": "E0601"}, 9)
    enrolled = _event(patient, "p-7", "program.enrolled", {"program_code": "CPAP-RESUPPLY"}, 2, source="crm")
    _event(patient_make(), "x-1", "refill.due", {"supply_type": "CPAP-MASK"}, 1)  # another patient's
    officer = verified_client.sign_in(role="compliance officer")

    response = verified_client.get(f"/consent/patients/{patient.pk}/")

    assert response.status_code == 200
    section = _section(response.content.decode())
    assert "<h2" not in section.split("</h2>", 1)[1]  # the section is the events table only
    assert section.index("Enrolled in a program") < section.index("Equipment delivered")  # newest first
    assert "Equipment type: <code>CPAP</code>" in section
    assert "Procedure or item: <code>E0601</code>" in section
    assert "Program: <code>CPAP-RESUPPLY</code>" in section
    assert "<code>equipment.delivered</code>" in section
    assert "ehr-north" in section and "crm" in section
    # In the organisation's zone, named, as every page writes an instant (issue 17: `{% load when %}`).
    written = Template("{% load when %}{{ t|when }}").render(Context({"t": enrolled.occurred_at}))
    assert written and written in section
    assert "Refill due" not in section and "CPAP-MASK" not in section
    assert "<script" not in section and not re.search(r"\sstyle=", section)  # strict CSP: no inline script or style
    viewed = AuditEvent.objects.filter(action="patient.viewed", actor=officer).latest("id")
    assert viewed.details == {"authorization_ids": [], "event_ids": [enrolled.pk, delivered.pk]}


def test_patient_page_without_events_says_so(verified_client):
    patient = patient_make()
    verified_client.sign_in(role="administrator")
    section = _section(verified_client.get(f"/consent/patients/{patient.pk}/").content.decode())
    assert "No care events have been reported for this patient." in section
    assert "<table" not in section


def test_r_min_necessary_marketer_does_not_see_the_care_events(verified_client):
    patient = patient_make()
    _event(patient, "d-1", "equipment.delivered", {"equipment_type": "CPAP"}, 1)
    verified_client.sign_in(role="marketer")
    assert verified_client.get(f"/consent/patients/{patient.pk}/").status_code == 404
