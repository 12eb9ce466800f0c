"""The integration records expiry events from a file (issue 4 item 2; R-AUTH-DEFECTIVE, R-NO-PHI-LEAK)."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEvent
from consent.selectors.coverage import CoverageGap, authorization_covering_list, authorization_gap_list
from consent.services.authorizations import authorization_grant
from consent.tests.factories import patient_make, purpose_make

pytestmark = pytest.mark.django_db


def test_r_auth_defective_integration_file_ends_event_based_coverage(tmp_path):
    purpose = purpose_make(code="cpap-rental")
    patient = patient_make(external_id="MRN-5521")
    authorization_grant(
        actor=None,
        patient=patient,
        purpose=purpose,
        signed_at=timezone.now() - timedelta(days=30),
        expires_at=None,
        expiry_event="when you no longer rent equipment from us",
    )
    yesterday = timezone.localdate() - timedelta(days=1)
    csv = tmp_path / "events.csv"
    csv.write_text(
        "external_id,purpose,occurred_on\n"
        f"MRN-5521,cpap-rental,{yesterday}\n"
        f"MRN-0000,cpap-rental,{yesterday}\n"
        "MRN-5521,cpap-rental,not-a-date\n"
    )
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError):
        call_command("record_expiry_events", str(csv), stdout=out, stderr=err)

    assert "1 expiry event(s) recorded, 2 row(s) not recorded." in out.getvalue()
    assert err.getvalue().splitlines() == ["row 3: unknown_patient", "row 4: bad_date"]
    assert "MRN" not in err.getvalue() + out.getvalue()
    assert not authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists()
    assert authorization_gap_list(purpose_id=purpose.pk, patient_ids=[patient.pk]) == {
        patient.pk: CoverageGap.EXPIRY_EVENT
    }
    event = AuditEvent.objects.get(action="authorization.expiry_event_recorded")
    assert event.actor_role == "integration" and event.details["source"] == "integration"
