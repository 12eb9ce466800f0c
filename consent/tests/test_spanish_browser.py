"""In Chromium on a phone (390 px wide), as a Spanish-reading patient would (issue 17, "done when"): the invitation in
Spanish, the portal in Spanish, a mistake shown in a summary at the top with the focus on it, the Spanish version of the
form signed, and a Spanish PDF copy. Every page passes axe-core. Marked `browser`."""
import re
from urllib.parse import urlsplit

import pytest
from django.core import mail

from conftest import assert_accessible, pdf_text, screenshot
from consent.models import Authorization, Invitation
from consent.selectors.coverage import authorization_covering_list
from consent.services import signing
from consent.tests.factories import form_published_make, form_spanish_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser_context_args() -> dict:
    return {"viewport": PHONE, "accept_downloads": True, "locale": "en-US"}


def test_a_spanish_patient_signs_the_spanish_form_on_a_phone(browser_context, live_server, axe_js, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    patient = patient_make(email="rosa.garcia@example.org", full_name="Rosa María García", language="es")
    purpose = purpose_make(
        name="CPAP supplies", name_es="Suministros para CPAP",
        description="New masks, filters and tubing for your CPAP machine.",
        description_es="Mascarillas, filtros y tubos nuevos para su máquina CPAP.",
    )
    spanish = form_spanish_make(form_published_make(purpose))
    signing.invitation_create(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel=Invitation.Channel.EMAIL)
    invitation = mail.outbox[-1]
    assert invitation.subject == "Por favor, lea un formulario de Riverside Health"
    link = re.search(r"https?://\S+/my/invite/\S+/", invitation.body).group(0)
    page = browser_context.new_page()

    # The browser asks for English; the patient's stored language wins when they arrive from our link.
    page.goto(live_server.url + urlsplit(link).path)
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.locator("h1").inner_text() == "Revise su correo electrónico"
    assert_accessible(page, axe_js)
    code = re.search(r"Su código es: (\d{6})", mail.outbox[-1].body).group(1)
    page.get_by_label("El código de 6 dígitos del correo").fill(code)
    page.get_by_role("button", name="Continuar").click()
    page.wait_for_url(f"**/my/sign/{purpose.pk}/")
    assert page.locator("h1").inner_text() == spanish.title
    assert "Qué información usaremos" in page.locator(".form-text").inner_text()
    assert_accessible(page, axe_js)
    shown = page.locator(".form-text").inner_text()

    # A mistake: the button pressed with nothing filled in. The page opens on the summary, focused.
    page.get_by_role("button", name="Firmar el formulario").click()
    page.wait_for_load_state()
    summary = page.locator("#error-summary")
    assert summary.locator("h2").inner_text() == "Hay un problema"
    assert page.evaluate("document.activeElement.id") == "error-summary"
    top = page.evaluate("document.getElementById('error-summary').getBoundingClientRect().top")
    assert -1 <= top < PHONE["height"] / 2  # in view at the top (to the sub-pixel), not 3,000 px below
    assert summary.get_by_role("link").all_inner_texts() == [
        "Escriba su nombre completo para firmar.",
        "Marque la casilla para indicar que desea firmar.",
    ]
    assert page.title().startswith("Error: Leer y firmar")
    assert_accessible(page, axe_js)
    screenshot(page, "patient-sign-error-focused-es-390")
    summary.get_by_role("link", name="Escriba su nombre completo para firmar.").click()
    assert page.evaluate("document.activeElement.id") == "id_signature_name"

    page.get_by_label("Escriba su nombre completo para firmar").fill("Rosa María García")
    page.get_by_label("Firmo este formulario de forma electrónica.").check()
    page.get_by_role("button", name="Firmar el formulario").click()
    page.wait_for_url("**/my/signed/*/")
    assert page.locator("h1").inner_text() == "Gracias. Usted firmó el formulario."
    assert_accessible(page, axe_js)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Descargar su copia (PDF)").click()
    pdf_path = tmp_path / "copia.pdf"
    download_info.value.save_as(pdf_path)
    authorization = Authorization.objects.get(patient=patient, purpose=purpose)
    assert authorization.form_version == spanish
    assert list(authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk])) == [authorization]
    text = pdf_text(pdf_path.read_bytes())
    words = " ".join(re.sub(r"Página \d+ de \d+", "", text).split())
    # R-AUTH-COPY: word for word what the page showed, in Spanish, then the Spanish signature block.
    assert words.startswith(" ".join(shown.split()))
    assert "Firmado electrónicamente por: Rosa María García" in words
    assert "Esta autorización termina el:" in words and "Firmado por el paciente." in words
    assert "Signed electronically" not in words
