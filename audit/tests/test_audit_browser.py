"""In Chromium: a compliance officer opens a patient's record, then the audit log from the navigation, filters
it by action and by patient, and opens that patient's full history; both pages pass axe-core. Marked `browser`.
R-SEC-AUDIT, R-MIN-NECESSARY.

Screenshots: 80-audit-log (the log filtered), 81-patient-history.

The data is made through the real services. The audit app may import no other app (lint-imports), so this test
reaches the consent and project test factories through importlib, at run time only.
"""
import importlib

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from conftest import assert_accessible, browser_sign_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _factories(name: str):
    return importlib.import_module(name)


@pytest.fixture
def history(settings):
    """Three patients with consent activity, one of whom signs, is viewed by staff, and revokes."""
    settings.AUDIT_CHECKPOINT_KEYS = "test-only-audit-checkpoint-key-0123456789abcdef"
    consent = _factories("consent.tests.factories")
    services = importlib.import_module("consent.services")
    purpose = consent.purpose_make(name="CPAP supplies", code="cpap-supplies")
    refills = consent.purpose_make(name="Refill reminders", code="refill-reminders")
    patients = [consent.patient_make() for _ in range(3)]
    for patient in patients:
        consent.authorization_make(patient=patient, purpose=purpose)
    consent.authorization_make(patient=patients[0], purpose=refills)
    services.authorization_revoke(actor=None, patient_id=patients[0].pk, purpose_id=refills.pk, channel="portal")
    call_command("audit_checkpoint")
    call_command("audit_verify")
    return patients[0]


def test_r_sec_audit_a_compliance_officer_filters_the_log_and_opens_a_patient_history(
    page, live_server, history, axe_js
):
    officer = _factories("hipaamail.tests.factories").staff_make(role="compliance officer", with_totp=True)
    browser_sign_in(page, live_server, officer)

    # The officer looks at the patient's record first: that view is itself audited, with the patient's id.
    page.goto(f"{live_server.url}/consent/patients/{history.pk}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.wait_for_url(f"{live_server.url}/audit/")
    assert page.get_by_role("region", name="Hash chain status").is_visible()
    assert "intact through sequence" in page.get_by_role("region", name="Hash chain status").inner_text()

    page.select_option("select[name=action]", "authorization.granted")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/audit/?*action=authorization.granted*")
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == 4  # four authorizations were signed
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"authorization.granted"}

    page.fill("input[name=patient]", str(history.pk))
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(f"**/audit/?*patient={history.pk}*")
    assert page.locator("table.audit tbody tr").count() == 2  # the two this patient signed
    assert_accessible(page, axe_js)
    screenshot(page, "80-audit-log")

    page.get_by_role("link", name=f"Patient #{history.pk}: full history on one page").click()
    page.wait_for_url(f"{live_server.url}/audit/patients/{history.pk}/")
    actions = page.locator("table.audit tbody td:nth-child(3)").all_inner_texts()
    assert actions[:3] == ["audit.log_viewed", "patient.viewed", "authorization.revoked"]
    assert {"patient.created", "authorization.granted"} <= set(actions)
    assert page.get_by_role("link", name="Open the patient record").get_attribute("href") == (
        f"/consent/patients/{history.pk}/"
    )
    assert_accessible(page, axe_js)
    screenshot(page, "81-patient-history")

    recorded = AuditEvent.objects.filter(actor=officer, patient_id=history.pk).values_list("action", flat=True)
    assert set(recorded) == {"patient.viewed", "audit.log_viewed", "audit.patient_history_viewed"}
