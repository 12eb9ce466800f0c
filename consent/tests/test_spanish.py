"""Spanish for patients (issue 17, item 6): a form version in Spanish linked to the English one (ADR 0026), the
patient's language stored and used for their mail and for the portal when they arrive from a link, the language
switcher, and the signed copy in the language signed. Coverage stays per purpose (THE predicate is unchanged)."""
import re

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import AuditEvent
from conftest import pdf_text
from consent.documents import form_sections, form_text, text_hash
from consent.models import Authorization, AuthorizationForm, Invitation, Patient
from consent.selectors.coverage import authorization_covering_list
from consent.selectors.form_versions import form_version_current, form_version_for_language
from consent.services import form_versions, signing
from consent.services.patients import patient_language_set
from consent.tests.factories import form_published_make, form_spanish_make, patient_make, purpose_make

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_and_media")]


def _code(message) -> str:
    return re.search(r"(?:Your code is|Su código es): (\d{6})", message.body).group(1)


@pytest.fixture
def spanish(django_capture_on_commit_callbacks):
    """A Spanish-reading patient invited to a purpose whose current form has a published Spanish version."""
    patient = patient_make(email="rosa.garcia@example.org", full_name="Rosa María García", language="es")
    purpose = purpose_make(name="CPAP supplies")
    english = form_published_make(purpose)
    spanish = form_spanish_make(english)
    with django_capture_on_commit_callbacks(execute=True):
        _, token = signing.invitation_create(
            actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel=Invitation.Channel.EMAIL
        )
    return patient, purpose, english, spanish, token


# --- The model: a translation of the same version ------------------------------------------------------------


def test_a_spanish_version_is_the_same_version_linked_to_the_english_one(spanish):
    _, purpose, english, translation, _ = spanish
    assert (translation.purpose_id, translation.version, translation.language) == (purpose.pk, english.version, "es")
    assert translation.translation_of_id == english.pk
    assert translation.status == AuthorizationForm.Status.PUBLISHED and translation.text_hash
    # The English version stays the current one (R-SEND-SCOPE reads it); Spanish readers are offered the translation.
    assert form_version_current(purpose_id=purpose.pk) == english
    assert form_version_for_language(purpose_id=purpose.pk, language="es") == translation
    assert form_version_for_language(purpose_id=purpose.pk, language="en") == english
    # Its fixed headings are Spanish, its text is the author's Spanish.
    headings = [heading for heading, _ in form_sections(translation)]
    assert headings[:4] == ["Qué información usaremos", "Quién la usará", "Quién puede recibirla", "Para qué"]
    assert "Solo usaremos: su nombre, su correo electrónico." in form_text(translation)
    assert "Esta autorización termina 24 meses después del día en que la firme." in form_text(translation)


def test_english_form_text_is_unchanged_by_i18n(spanish):
    """R-AUTH-IMMUTABLE: an English version's text (and so its stored hash) is what it was before languages."""
    english = spanish[2]
    assert text_hash(form_text(english)) == english.text_hash
    assert "What information we will use\n" in form_text(english)
    assert "We will use only: your first name, your email address." in form_text(english)


def test_a_translation_keeps_the_english_expiry_and_patient_fields(spanish):
    """ADR 0026: the same version says the same thing; what ends it and what campaigns may use cannot differ."""
    _, purpose, english, _, _ = spanish
    second = form_published_make(purpose_make())
    draft = form_versions.form_version_translation_create(actor=None, form_id=second.pk, language="es")

    form_versions.form_version_update(
        actor=None, form_id=draft.pk, title="Permiso", merge_fields=["first_name", "state", "email"],
        expiry_kind="months", expiry_months=120,
    )

    draft.refresh_from_db()
    assert draft.merge_fields == second.merge_fields and draft.expiry_months == second.expiry_months == 24


def test_only_a_published_english_version_can_be_translated():
    purpose = purpose_make()
    draft = form_versions.form_version_create(actor=None, purpose_id=purpose.pk)
    with pytest.raises(ValidationError):
        form_versions.form_version_translation_create(actor=None, form_id=draft.pk, language="es")
    assert AuthorizationForm.objects.filter(purpose=purpose).count() == 1


def test_r_auth_core_6_the_spanish_signature_statement_must_name_the_representative_authority():
    english = form_published_make(purpose_make())
    draft = form_versions.form_version_translation_create(actor=None, form_id=english.pk, language="es")
    missing = form_versions.form_version_missing_elements(draft)
    # Copied from English, it does not say "representante" and "autoridad" yet.
    assert [element.rule for element in missing] == ["R-AUTH-CORE-6"]


def test_staff_create_the_spanish_version_from_the_form_editor(verified_client):
    officer = verified_client.sign_in(role="compliance officer")
    english = form_published_make(purpose_make(name="CPAP supplies"))
    page = verified_client.get(reverse("consent:purpose_detail", args=[english.purpose_id])).content.decode()
    assert reverse("consent:form_translate", args=[english.purpose_id, english.pk]) in page

    response = verified_client.post(
        reverse("consent:form_translate", args=[english.purpose_id, english.pk]), {"language": "es"}
    )

    draft = AuthorizationForm.objects.get(translation_of=english)
    assert response.status_code == 302
    assert response.url == reverse("consent:form_edit", args=[english.purpose_id, draft.pk])
    editor = verified_client.get(response.url).content.decode()
    assert "This is the Spanish version of version 1" in editor
    assert "INFLESZ" in editor
    event = AuditEvent.objects.get(action="authorization_form.translation_created")
    assert event.details == {
        "purpose_id": english.purpose_id, "version": 1, "language": "es", "translation_of_id": english.pk
    }
    assert event.actor_id == officer.pk


# --- The patient's language: mail and the portal from a link --------------------------------------------------


def test_the_invitation_and_the_code_are_mailed_in_the_patients_language(spanish, client):
    patient, _, _, _, token = spanish
    invitation = mail.outbox[-1]
    assert invitation.subject == "Por favor, lea un formulario de Riverside Health"
    assert "le pide permiso para enviarle mensajes sobre “CPAP supplies”" in invitation.body
    assert invitation.extra_headers["Content-Language"] == "es"
    html = invitation.alternatives[0][0]
    assert '<html lang="es">' in html and "Leer el formulario" in html

    page = client.get(f"/my/invite/{token}/")

    code_mail = mail.outbox[-1]
    assert code_mail.subject == "Su código de Riverside Health" and "Funciona durante 10 minutos." in code_mail.body
    # The portal opens in Spanish, and the language is kept on this device for the next pages.
    assert page.status_code == 200 and '<html lang="es">' in page.content.decode()
    assert "Revise su correo electrónico" in page.content.decode()
    assert page.cookies["django_language"].value == "es"


def test_an_english_patient_gets_english_mail(django_capture_on_commit_callbacks):
    patient = patient_make()
    purpose = purpose_make(name="CPAP supplies")
    form_spanish_make(form_published_make(purpose))
    with django_capture_on_commit_callbacks(execute=True):
        signing.invitation_create(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="email")
    assert mail.outbox[-1].subject == "Please read a form from Riverside Health"
    assert "would like your permission to send you messages about “CPAP supplies”" in mail.outbox[-1].body


def test_a_spanish_patient_signs_the_spanish_version_and_gets_a_spanish_copy(spanish, client):
    """R-AUTH-COPY, R-AUTH-ESIGN in Spanish: the authorization records the version signed; coverage is per purpose."""
    patient, purpose, english, translation, token = spanish
    client.get(f"/my/invite/{token}/")
    client.post("/my/code/", {"code": _code(mail.outbox[-1])})
    page = client.get(f"/my/sign/{purpose.pk}/").content.decode()
    assert "Qué información usaremos" in page and "Firmar el formulario" in page
    assert f'name="form_id" value="{translation.pk}"' in page

    response = client.post(f"/my/sign/{purpose.pk}/", {
        "text_hash": text_hash(form_text(translation)), "form_id": translation.pk, "signer": "patient",
        "signature_name": "Rosa María García", "intent": "on",
    })

    authorization = Authorization.objects.get(patient=patient)
    assert response.status_code == 302
    assert authorization.form_version == translation and authorization.form_version.language == "es"
    assert authorization.document_text == form_text(translation)
    assert list(authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk])) == [authorization]
    text = " ".join(pdf_text(authorization.pdf.open("rb").read()).split())
    assert "Qué información usaremos" in text and "Firmado electrónicamente por: Rosa María García" in text
    assert "Esta autorización termina el:" in text and "Huella digital del texto firmado (SHA-256):" in text
    copy = mail.outbox[-1]
    assert copy.subject == "Su copia del formulario que firmó" and copy.attachments


def test_the_switcher_changes_the_page_language_and_a_signed_in_patients_stored_language(client):
    patient = patient_make()
    client.post("/my/sign-in/", {"email": patient.email})
    client.post("/my/code/", {"code": _code(mail.outbox[-1])})

    response = client.post("/my/language/", {"language": "es", "next": "/my/"})

    assert response.status_code == 302 and response.url == "/my/"
    assert "Sus opciones" in client.get("/my/").content.decode()
    assert Patient.objects.get(pk=patient.pk).language == "es"
    event = AuditEvent.objects.get(action="patient.language_set")
    assert event.details == {"language": "es", "before": "en", "source": "portal"}
    assert event.patient_id == patient.pk


def test_the_switcher_without_a_patient_changes_the_page_only(client):
    patient = patient_make()
    response = client.post("/my/language/", {"language": "es", "next": "/my/sign-in/"})
    assert response.status_code == 302
    assert "Escriba su correo electrónico." in client.get("/my/sign-in/").content.decode()
    assert Patient.objects.get(pk=patient.pk).language == "en"
    assert not AuditEvent.objects.filter(action="patient.language_set").exists()


def test_the_switcher_goes_nowhere_outside_our_site(client):
    response = client.post("/my/language/", {"language": "es", "next": "https://evil.example/"}, HTTP_ACCEPT="text/html")
    assert response.status_code == 302 and response.url == "/"


def test_staff_set_the_patients_language_from_their_record(verified_client):
    officer = verified_client.sign_in(role="compliance officer")
    patient = patient_make()
    page = verified_client.get(reverse("consent:patient_detail", args=[patient.pk])).content.decode()
    assert 'name="language"' in page and "Español" in page

    response = verified_client.post(reverse("consent:patient_language", args=[patient.pk]), {"language": "es"})
    refused = verified_client.post(reverse("consent:patient_language", args=[patient.pk]), {"language": "fr"})

    assert response.status_code == refused.status_code == 302
    assert Patient.objects.get(pk=patient.pk).language == "es"
    event = AuditEvent.objects.get(action="patient.language_set")
    assert event.actor_id == officer.pk and event.details["source"] == "staff"


def test_a_marketer_cannot_set_a_patients_language(verified_client):
    """R-MIN-NECESSARY: the same 404 as every staff patient page."""
    verified_client.sign_in(role="marketer")
    patient = patient_make()
    response = verified_client.post(reverse("consent:patient_language", args=[patient.pk]), {"language": "es"})
    assert response.status_code == 404
    assert Patient.objects.get(pk=patient.pk).language == "en"
    assert not AuditEvent.objects.filter(action="patient.language_set").exists()


def test_patient_language_set_refuses_an_unknown_language():
    patient = patient_make()
    with pytest.raises(ValidationError):
        patient_language_set(actor=None, patient_id=patient.pk, language="fr", source="portal")
    assert Patient.objects.get(pk=patient.pk).language == "en"


def test_a_purpose_named_in_spanish_is_shown_by_that_name_to_spanish_readers(client, django_capture_on_commit_callbacks):
    """Purpose names as staff wrote them, in the reader's language; never lower-cased."""
    patient = patient_make(language="es")
    purpose = purpose_make(
        name="CPAP supplies", name_es="Suministros para CPAP", description_es="Mascarillas y filtros nuevos."
    )
    form_spanish_make(form_published_make(purpose))
    with django_capture_on_commit_callbacks(execute=True):
        signing.invitation_create(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="email")
    assert "mensajes sobre “Suministros para CPAP”" in mail.outbox[-1].body

    client.post("/my/language/", {"language": "es", "next": "/my/"})
    client.post("/my/sign-in/", {"email": patient.email})
    client.post("/my/code/", {"code": _code(mail.outbox[-1])})
    spanish_home = client.get("/my/").content.decode()
    client.post("/my/language/", {"language": "en", "next": "/my/"})
    english_home = client.get("/my/").content.decode()

    assert "<strong>Suministros para CPAP</strong>" in spanish_home and "Mascarillas y filtros nuevos." in spanish_home
    assert "<strong>CPAP supplies</strong>" in english_home and "Suministros" not in english_home


def test_r_auth_plain_publishing_a_spanish_version_records_its_inflesz_score(spanish):
    """R-AUTH-PLAIN: a Spanish version is scored with INFLESZ, and the publish event says so (a code, no text)."""
    translation = spanish[3]
    event = AuditEvent.objects.get(action="authorization_form.published", object_id=str(translation.pk))
    score = form_versions.form_version_readability(translation)
    assert score.formula == "INFLESZ (Szigriszt-Pazos)"
    assert event.details["language"] == "es" and event.details["translation_of_id"] == spanish[2].pk
    assert event.details["readability_inflesz"] == round(score.score)
    assert "readability_grade" not in event.details
    assert ("readability_warning" in event.details) == score.too_hard
