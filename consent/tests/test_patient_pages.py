"""Patient pages people can use (issue 17, item 5): the error summary at the top, the number and hours wherever we say
"call us", calm visual weight for signing, purpose names as written, and the exact end date in the signed copy."""
import re

import pytest
from django.core import mail
from django.template import Context, Template

from conftest import pdf_text
from consent.documents import form_text, text_hash
from consent.models import Authorization, Invitation
from consent.services import signing
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_and_media")]


def _sign_in(client, patient) -> None:
    client.post("/my/sign-in/", {"email": patient.email})
    code = re.search(r"Your code is: (\d{6})", mail.outbox[-1].body).group(1)
    assert client.post("/my/code/", {"code": code}).status_code == 302


@pytest.fixture
def signed_in(client):
    patient = patient_make(full_name="Margaret Ellen Jones")
    purpose = purpose_make(name="CPAP Supplies by ResMed")
    form = form_published_make(purpose)
    _sign_in(client, patient)
    return patient, purpose, form


def test_a_failed_signature_opens_with_a_summary_of_the_problems_at_the_top(client, signed_in):
    """The GOV.UK pattern: a box titled "There is a problem" first in the page, focusable and autofocused, linking to
    each field in error; the page's title says there is an error."""
    _, purpose, form = signed_in

    response = client.post(f"/my/sign/{purpose.pk}/", {"text_hash": text_hash(form_text(form)), "signer": "patient"})

    page = response.content.decode()
    assert response.status_code == 400
    assert "<title>Error: Read and sign" in page
    summary = re.search(r'<div class="error-summary".*?</div>', page, re.S).group(0)
    assert 'tabindex="-1"' in summary and "autofocus" in summary and 'role="alert"' in summary
    assert "There is a problem" in summary
    assert re.findall(r'<a href="#(\w+)">([^<]+)</a>', summary) == [
        ("id_signature_name", "Type your full name to sign."),
        ("id_intent", "Tick the box to show that you mean to sign."),
    ]
    # Before the form's text: on a phone it is the first thing read, not 3,000 pixels below.
    assert page.index("error-summary") < page.index('class="form-text"')
    assert 'src="/static/js/error-summary.js"' in page
    assert not Authorization.objects.exists()


def test_a_wrong_code_gets_the_summary_too(client):
    patient = patient_make()
    client.post("/my/sign-in/", {"email": patient.email})
    page = client.post("/my/code/", {"code": "000000x"}).content.decode()
    assert "There is a problem" in page and '<a href="#id_code">That code is not right.' in page


def test_the_summary_is_in_spanish_for_a_spanish_page(client, signed_in):
    _, purpose, form = signed_in
    client.post("/my/language/", {"language": "es", "next": "/my/"})
    response = client.post(f"/my/sign/{purpose.pk}/", {"text_hash": text_hash(form_text(form)), "signer": "patient"})
    page = response.content.decode()
    assert response.status_code == 400, page[-3000:]
    assert "Hay un problema" in page and "Escriba su nombre completo para firmar." in page


@pytest.mark.parametrize("language", ["en", "es"])
def test_call_us_gives_the_number_and_the_hours(client, settings, language):
    settings.HIPAAMAIL_ORGANISATION_PHONE = "(217) 555-0199"
    settings.HIPAAMAIL_ORGANISATION_HOURS = "Monday to Friday, 9 am to 5 pm"
    settings.HIPAAMAIL_ORGANISATION_HOURS_ES = "de lunes a viernes, de 9 a. m. a 5 p. m."
    client.cookies["django_language"] = language
    hours = {"en": "Monday to Friday, 9 am to 5 pm", "es": "de lunes a viernes, de 9 a. m. a 5 p. m."}[language]
    words = {"en": "call us at", "es": "llamarnos al"}[language]

    for url in ("/unsubscribe/not-a-token/", "/my/invite/not-a-token/"):
        page = client.get(url).content.decode()
        assert f'{words} <a class="phone" href="tel:+12175550199">(217) 555-0199</a> ({hours})' in page, url


def test_purpose_names_are_shown_as_written_after_stopping(client, signed_in):
    patient, purpose, _ = signed_in
    authorization = authorization_make(patient=patient, purpose=purpose)

    response = client.post(f"/my/authorizations/{authorization.pk}/stop/", follow=True)

    assert "We will not send you messages about “CPAP Supplies by ResMed” any more." in response.content.decode()
    assert "cpap supplies by resmed" not in response.content.decode()


def test_only_the_invited_purpose_gets_the_primary_sign_button(client):
    """Calm visual weight: one primary button, for the purpose the patient was invited to; the others secondary."""
    patient = patient_make()
    invited = purpose_make(name="Diabetes education")
    form_published_make(invited)
    for name in ("CPAP supplies", "Hearing aids"):
        form_published_make(purpose_make(name=name))
    _, token = signing.invitation_create(
        actor=None, patient_id=patient.pk, purpose_id=invited.pk, channel=Invitation.Channel.QR
    )
    client.get(f"/my/invite/{token}/")
    code = re.search(r"Your code is: (\d{6})", mail.outbox[-1].body).group(1)
    client.post("/my/code/", {"code": code})

    page = client.get("/my/").content.decode()

    buttons = re.findall(r'<a class="(button[^"]*)" href="/my/sign/(\d+)/"', page)
    assert len(buttons) == 3
    assert [pk for cls, pk in buttons if cls == "button"] == [str(invited.pk)]
    assert sorted(cls for cls, _ in buttons) == ["button", "button secondary", "button secondary"]


def test_without_an_invitation_no_sign_button_is_primary(client, signed_in):
    form_published_make(purpose_make(name="Hearing aids"))
    page = client.get("/my/").content.decode()
    assert re.findall(r'<a class="(button[^"]*)" href="/my/sign/', page) == ["button secondary", "button secondary"]


def test_r_auth_copy_the_pdf_states_the_exact_end_date_the_portal_shows(client, signed_in):
    """The copy says when the authorization ends as a date, exactly as the portal writes it, not only the rule."""
    patient, purpose, form = signed_in
    client.post(f"/my/sign/{purpose.pk}/", {
        "text_hash": text_hash(form_text(form)), "signer": "patient",
        "signature_name": "Margaret Ellen Jones", "intent": "on",
    })
    authorization = Authorization.objects.get(patient=patient)
    # As every page writes a date (the `when` filter, in the organisation's zone).
    shown = Template('{% load when %}{{ value|when:"date" }}').render(Context({"value": authorization.expires_at}))

    portal = client.get("/my/").content.decode()
    text = " ".join(pdf_text(authorization.pdf.open("rb").read()).split())

    assert f"Ends {shown}." in portal
    assert f"This authorization ends on: {shown}" in text
    assert "This authorization ends 24 months after the day you sign it." in text  # the rule, as signed, stays
    assert shown in client.get(f"/my/signed/{authorization.pk}/").content.decode()
