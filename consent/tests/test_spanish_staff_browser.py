"""In Chromium, as a compliance officer would (issue 17, item 6; ADR 0026): make the Spanish version of a published
form from the form editor, translate it, see its INFLESZ score, publish it; set a patient's language on their record.
Each page passes axe-core. Marked `browser`."""
import pytest

from accounts.tests.factories import staff_make
from conftest import assert_accessible, browser_sign_in, screenshot
from consent.models import AuthorizationForm, Patient
from consent.selectors.form_versions import form_version_for_language
from consent.tests.factories import SPANISH_FORM_FIELDS, form_published_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_officer_publishes_the_spanish_version_and_sets_a_patients_language(page, live_server, axe_js):
    officer = staff_make(role="compliance officer", email="c.ramirez@riverside-health.example", with_totp=True)
    purpose = purpose_make(name="CPAP supplies")
    english = form_published_make(purpose)
    patient = patient_make()
    browser_sign_in(page, live_server, officer)

    page.goto(f"{live_server.url}/consent/purposes/{purpose.pk}/")
    assert_accessible(page, axe_js)
    screenshot(page, "patient-staff-purpose-spanish-version")
    page.get_by_role("button", name="Spanish version").click()
    page.wait_for_url("**/forms/*/")
    draft = AuthorizationForm.objects.get(translation_of=english)
    assert "This is the Spanish version of version 1." in page.locator("main").inner_text()

    page.fill("input[name=title]", "Permiso para enviarle mensajes sobre Suministros para CPAP")
    for name, text in SPANISH_FORM_FIELDS.items():
        page.fill(f"textarea[name={name}]", text)
    page.get_by_role("button", name="Save draft").click()
    page.wait_for_load_state()
    main = page.locator("main").inner_text()
    assert "Readability: INFLESZ score" in main and "Szigriszt-Pazos" in main
    assert_accessible(page, axe_js)
    screenshot(page, "patient-staff-spanish-form-editor")
    page.get_by_role("button", name="Publish version 1").click()
    page.wait_for_url(f"**/consent/purposes/{purpose.pk}/")
    draft.refresh_from_db()
    assert draft.status == AuthorizationForm.Status.PUBLISHED
    assert form_version_for_language(purpose_id=purpose.pk, language="es") == draft
    assert "Español" in page.locator("table").inner_text()
    screenshot(page, "patient-staff-purpose-versions-with-spanish")

    page.goto(f"{live_server.url}/consent/patients/{patient.pk}/")
    page.select_option("#patient-language", "es")
    page.get_by_role("button", name="Save language").click()
    page.wait_for_load_state()
    assert "Language saved." in page.locator("main").inner_text()
    assert Patient.objects.get(pk=patient.pk).language == "es"
    assert_accessible(page, axe_js)
    screenshot(page, "patient-staff-patient-language")
