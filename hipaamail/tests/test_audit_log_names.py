"""The audit log's names for ids (audit.naming, registered by hipaamail.audit_names): campaigns, purposes and the
other objects by name for the log's readers, API keys for administrators only, a patient never (R-MIN-NECESSARY,
R-NO-PHI-LEAK). Here rather than in audit/tests: the audit app imports no other app, and these need their objects."""
import pytest

from accounts.tests.factories import staff_make
from api.keys import api_key_create
from audit import actions, sentences
from audit.naming import names_for
from audit.services import audit_record
from campaigns.tests.factories import campaign_make
from consent.tests.factories import purpose_make

pytestmark = pytest.mark.django_db


def test_a_patient_who_stops_a_purpose_in_the_portal():
    purpose = purpose_make(name="CPAP supplies")
    event = audit_record(
        actor=None, actor_role=actions.PATIENT, action=actions.AUTHORIZATION_REVOKED, object_type="patient",
        object_id=2, patient_id=2, details={"purpose_id": purpose.pk, "channel": "portal", "authorization_ids": [4]},
    )
    assert sentences.event_sentence(event, names_for([event], viewer=None)) == (
        "Patient #2 stopped “CPAP supplies” in the portal."
    )


def test_a_compliance_officer_who_approves_a_campaign_is_named_with_the_campaign():
    officer = staff_make(role="compliance officer")
    officer.first_name, officer.last_name = "Dana", "Reyes"
    officer.save(update_fields=["first_name", "last_name"])
    campaign = campaign_make(purpose=purpose_make(), name="Flu clinics")
    event = audit_record(actor=officer, action=actions.CAMPAIGN_APPROVED, object_type="campaign", object_id=campaign.pk)
    assert sentences.event_sentence(event, names_for([event], viewer=officer)) == (
        "Dana Reyes (compliance officer) approved the campaign “Flu clinics”."
    )


def test_an_object_that_no_longer_resolves_is_said_by_its_number():
    event = audit_record(actor=None, action=actions.CAMPAIGN_SENT, object_type="campaign", object_id=987654)
    assert sentences.event_sentence(event, {}) == "Campaign #987654 finished sending."


def test_an_api_key_is_named_for_administrators_only(verified_client):
    administrator = staff_make(role="administrator", with_totp=True)
    key = api_key_create(actor=administrator, name="EHR nightly sync", scopes=["purposes:read"])
    audit_record(actor=None, actor_role=f"{actions.API_KEY_PREFIX}{key.key.pk}", action=actions.API_CALLED,
                 object_type="api_key", object_id=key.key.pk)

    verified_client.sign_in(user=administrator)
    as_administrator = verified_client.get(f"/audit/?action={actions.API_CALLED}").content.decode()
    verified_client.sign_in(role="compliance officer")
    as_officer = verified_client.get(f"/audit/?action={actions.API_CALLED}").content.decode()

    assert "The API key “EHR nightly sync” called the integration API." in as_administrator
    assert f"API key #{key.key.pk} called the integration API." in as_officer
    assert "EHR nightly sync" not in as_officer


def test_r_no_phi_leak_the_log_never_names_a_patient(verified_client):
    from consent.tests.factories import patient_make

    patient = patient_make(full_name="Zebulon Quillfeather")
    audit_record(actor=None, actor_role=actions.PATIENT, action=actions.PATIENT_EMAIL_PROVEN,
                 object_type="patient", object_id=patient.pk, patient_id=patient.pk)
    verified_client.sign_in(role="compliance officer")

    page = verified_client.get("/audit/").content.decode()

    assert f"Patient #{patient.pk} signed in to the portal with the emailed code." in page
    assert "Quillfeather" not in page
