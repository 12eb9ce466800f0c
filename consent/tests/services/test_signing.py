"""A patient signs from an invitation: the link, the emailed code, the form, the signature bound to the text,
the PDF copy (attached and emailed). R-AUTH-ESIGN, R-AUTH-CORE-6, R-AUTH-COPY, R-NO-PHI-LEAK."""
import re
from datetime import date, datetime, time, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import dateformat, timezone

from audit.models import AuditEvent
from conftest import pdf_text
from consent.documents import form_text, text_hash
from consent.models import Authorization, AuthorizationForm, Invitation
from consent.services import signing
from consent.tests.factories import form_published_make, patient_make, purpose_make

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_and_media")]

def prove_email(client, invitation_token: str) -> None:
    """Open the invitation and type back the code it emailed."""
    client.get(f"/my/invite/{invitation_token}/")
    response = client.post("/my/code/", {"code": code_from_outbox()})
    assert response.status_code == 302, response.content


def code_from_outbox() -> str:
    codes = [m for m in mail.outbox if "code" in m.subject.lower()]
    return re.search(r"Your code is: (\d{6})", codes[-1].body).group(1)


def sign_data(form_version, **overrides) -> dict:
    data = {
        "text_hash": text_hash(form_text(form_version)),
        "signer": "patient",
        "representative_authority": "",
        "signature_name": "Margaret Ellen Jones",
        "intent": "on",
    }
    data |= overrides
    return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def invited():
    patient = patient_make(email="margaret.jones@example.org", full_name="Margaret Ellen Jones")
    purpose = purpose_make(name="CPAP supplies")
    form_version = form_published_make(purpose)
    invitation, token = signing.invitation_create(
        actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel=Invitation.Channel.EMAIL
    )
    return patient, purpose, form_version, invitation, token


def test_invitation_email_carries_a_link_that_names_nothing(invited, django_capture_on_commit_callbacks):
    """R-NO-PHI-LEAK: the link is a random token; the database keeps only its SHA-256."""
    patient = patient_make(email="walter.white@example.org", full_name="Walter Hartwell White")
    purpose = invited[1]
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = signing.invitation_create(
            actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel=Invitation.Channel.EMAIL
        )

    url = signing.invitation_url(token=token)
    path = urlsplit(url).path
    assert path == f"/my/invite/{token}/" and not urlsplit(url).query  # the random token and nothing else
    for secret in ("walter", "white", "example", "hartwell"):
        assert secret not in path.lower()
    assert len(token) >= 43  # 32 random bytes
    assert invitation.token_digest != token and token not in str(Invitation.objects.values_list().get(pk=invitation.pk))
    message = mail.outbox[-1]
    assert message.to == ["walter.white@example.org"]
    assert url in message.body
    assert "Walter" not in message.subject and "CPAP" not in message.subject
    assert abs(invitation.expires_at - invitation.created_at - timedelta(days=30)) < timedelta(seconds=1)
    assert AuditEvent.objects.filter(action="invitation.created", object_id=str(invitation.pk)).exists()


def test_qr_invitation_sends_nothing_and_gives_a_url_and_an_svg(invited):
    patient, purpose = invited[0], invited[1]
    outbox_before = len(mail.outbox)

    invitation, token = signing.invitation_create(
        actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel=Invitation.Channel.QR
    )
    link = signing.invitation_link(token=token)

    assert len(mail.outbox) == outbox_before
    assert link.url == signing.invitation_url(token=token)
    assert link.qr_svg.startswith("<svg") and "</svg>" in link.qr_svg


def test_opening_the_invitation_emails_a_code_and_masks_the_address(client, invited):
    """R-AUTH-ESIGN identity: the code goes to the address on record, shown masked."""
    token = invited[4]

    response = client.get(f"/my/invite/{token}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "We sent a code to the email address we have for you" in page
    assert "m***@example.org" in page
    assert "margaret.jones" not in page
    assert mail.outbox[-1].to == ["margaret.jones@example.org"]
    assert re.search(r"Your code is: \d{6}", mail.outbox[-1].body)
    assert AuditEvent.objects.filter(action="patient.code_sent", object_id=str(invited[0].pk)).exists()


def test_reloading_the_invitation_does_not_send_another_code(client, invited):
    token = invited[4]
    client.get(f"/my/invite/{token}/")
    client.get(f"/my/invite/{token}/")

    assert len([m for m in mail.outbox if "code" in m.subject.lower()]) == 1


def test_patient_signs_end_to_end_from_the_invitation(client, invited):
    """R-AUTH-ESIGN, R-AUTH-COPY: invitation, code, form, signature; stored with the hash, name, IP, user agent
    and form version; the PDF attached and emailed; the invitation used; all audited."""
    patient, purpose, form_version, invitation, token = invited
    prove_email(client, token)

    page = client.get(f"/my/sign/{purpose.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert form_version.title in body
    assert "Typing my name has the same effect as my handwritten signature." in body
    assert f'value="{text_hash(form_text(form_version))}"' in body
    # The date as every page writes it (the `when` filter: "Dec 7, 2026", in the organisation's zone).
    assert dateformat.format(timezone.localdate(), "M j, Y") in body

    response = client.post(
        f"/my/sign/{purpose.pk}/",
        sign_data(form_version),
        HTTP_USER_AGENT="Mozilla/5.0 (Test) Phone",
        REMOTE_ADDR="203.0.113.9",
    )

    authorization = Authorization.objects.get(patient=patient, purpose=purpose)
    assert response.status_code == 302 and response.url == f"/my/signed/{authorization.pk}/"
    assert authorization.form_version == form_version
    assert authorization.document_text == form_text(form_version)
    assert authorization.text_hash == text_hash(form_text(form_version))
    assert authorization.signature_name == "Margaret Ellen Jones"
    assert authorization.signed_ip == "203.0.113.9"
    assert authorization.user_agent == "Mozilla/5.0 (Test) Phone"
    assert authorization.signed_by_representative is False
    assert authorization.recorded_by is None and authorization.channel == "web"
    assert authorization.expires_at.date() >= (authorization.signed_at + timedelta(days=729)).date()
    assert authorization.pdf.name.startswith("authorizations/") and authorization.pdf.name.endswith(".pdf")
    assert "jones" not in authorization.pdf.name.lower()
    with authorization.pdf.open("rb") as pdf:
        assert pdf.read(5) == b"%PDF-"
    copy = mail.outbox[-1]
    assert copy.to == ["margaret.jones@example.org"]
    assert copy.attachments[0][0] == "signed-authorization.pdf" and copy.attachments[0][2] == "application/pdf"
    assert copy.attachments[0][1][:5] == b"%PDF-"
    invitation.refresh_from_db()
    assert invitation.used_at == authorization.signed_at
    actions = set(AuditEvent.objects.filter(object_id=str(authorization.pk)).values_list("action", flat=True))
    assert {"authorization.granted", "authorization.pdf_emailed"} <= actions
    confirmation = client.get(response.url).content.decode()
    assert "Thank you. You signed the form." in confirmation


def test_r_auth_esign_no_signing_without_proving_the_email(client, invited):
    """R-AUTH-ESIGN: without the emailed code typed back, the form cannot be signed."""
    purpose, form_version, token = invited[1], invited[2], invited[4]
    client.get(f"/my/invite/{token}/")  # a code was sent, but not typed back

    response = client.post(f"/my/sign/{purpose.pk}/", sign_data(form_version))

    assert response.status_code == 302 and response.url == "/my/sign-in/"
    assert not Authorization.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"intent": None}, "Tick the box to show that you mean to sign."),
        ({"signature_name": "   "}, "Type your full name to sign."),
    ],
    ids=["checkbox-unticked", "name-empty"],
)
def test_r_auth_esign_intent_checkbox_and_typed_name_are_required(client, invited, overrides, message):
    """R-AUTH-ESIGN: intent is an affirmative act: both a typed full name and the ticked checkbox."""
    purpose, form_version, token = invited[1], invited[2], invited[4]
    prove_email(client, token)
    outbox_before = len(mail.outbox)

    response = client.post(f"/my/sign/{purpose.pk}/", sign_data(form_version, **overrides))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Authorization.objects.exists()
    assert len(mail.outbox) == outbox_before


def test_r_auth_esign_hash_of_other_text_is_refused(client, invited):
    """R-AUTH-ESIGN: the signature binds to the exact text shown; a different hash signs nothing."""
    purpose, form_version, token = invited[1], invited[2], invited[4]
    prove_email(client, token)

    response = client.post(f"/my/sign/{purpose.pk}/", sign_data(form_version, text_hash=text_hash("another text")))

    assert response.status_code == 400
    assert "The form changed while you were reading it" in response.content.decode()
    assert not Authorization.objects.exists()


def test_r_auth_esign_a_form_replaced_while_reading_is_refused():
    """R-AUTH-IMMUTABLE with R-AUTH-ESIGN: signing an old version after a new one is published is refused."""
    patient = patient_make()
    purpose = purpose_make()
    old = form_published_make(purpose)
    form_published_make(purpose, purpose_description="To tell you about new CPAP machines.")

    with pytest.raises(Exception, match="replaced by a newer version"):
        signing.authorization_sign(
            patient_id=patient.pk, form_id=old.pk, shown_text_hash=text_hash(form_text(old)),
            signature_name="A B", intent_confirmed=True, signed_by_representative=False,
        )
    assert not Authorization.objects.exists()


def test_r_auth_core_6_representative_without_authority_is_refused(client, invited):
    """R-AUTH-CORE-6: a personal representative must describe their authority to act for the patient."""
    purpose, form_version, token = invited[1], invited[2], invited[4]
    prove_email(client, token)

    response = client.post(f"/my/sign/{purpose.pk}/", sign_data(form_version, signer="representative"))

    assert response.status_code == 400
    assert "Tell us how you are allowed to act for the patient" in response.content.decode()
    assert not Authorization.objects.exists()


def test_r_auth_core_6_representative_with_authority_is_recorded_as_such(client, invited):
    """R-AUTH-CORE-6: the representative's authority is stored and printed on the copy."""
    patient, purpose, form_version, _, token = invited
    prove_email(client, token)

    client.post(
        f"/my/sign/{purpose.pk}/",
        sign_data(form_version, signer="representative", signature_name="Ann Jones",
                  representative_authority="Daughter, health care power of attorney"),
    )

    authorization = Authorization.objects.get(patient=patient)
    assert authorization.signed_by_representative is True
    assert authorization.representative_authority == "Daughter, health care power of attorney"
    assert "Daughter, health care power of attorney" in _pdf_text(authorization)


def _pdf_text(authorization) -> str:
    with authorization.pdf.open("rb") as pdf:
        content = pdf.read()
    return pdf_text(content)


def _normalised(text: str) -> str:
    return " ".join(text.split())


def test_r_auth_copy_pdf_text_is_exactly_the_signed_document(client, invited):
    """R-AUTH-COPY: the text of the copy holds every paragraph of the text shown at signing, in order, and
    the signature block names the signer, the date and the hash."""
    patient, purpose, form_version, _, token = invited
    prove_email(client, token)
    client.post(f"/my/sign/{purpose.pk}/", sign_data(form_version))
    authorization = Authorization.objects.get(patient=patient)

    extracted = _normalised(_pdf_text(authorization).replace("Page 1 of 1", "").replace("Page 1 of 2", ""))
    extracted = re.sub(r"Page \d of \d", "", extracted)
    extracted = _normalised(extracted)

    position = 0
    for paragraph in authorization.document_text.split("\n\n"):
        wanted = _normalised(paragraph)
        found = extracted.find(wanted, position)
        assert found >= 0, f"paragraph missing from the PDF: {wanted[:60]!r}"
        position = found + len(wanted)
    assert "Signed electronically by: Margaret Ellen Jones" in extracted
    assert f"Date signed: {signing.signed_date_text(authorization.signed_at)}" in extracted
    assert authorization.text_hash in extracted.replace(" ", "")


def test_expiry_months_date_and_event_come_from_the_form():
    """R-AUTH-CORE-5: months after signing, the end of the stated day in our time zone, or the event."""
    signed_at = datetime(2026, 1, 31, 15, 0, tzinfo=ZoneInfo("UTC"))
    purpose = purpose_make()
    by_months = form_published_make(purpose, expiry_months=1)
    by_date = form_published_make(
        purpose, expiry_kind=AuthorizationForm.ExpiryKind.DATE, expiry_months=None, expiry_date=date(2027, 6, 30)
    )
    by_event = form_published_make(
        purpose, expiry_kind=AuthorizationForm.ExpiryKind.EVENT, expiry_months=None,
        expiry_event="when you no longer rent equipment from us",
    )

    assert signing.form_expiry_for(form=by_months, signed_at=signed_at) == (
        datetime(2026, 2, 28, 15, 0, tzinfo=ZoneInfo("UTC")), ""
    )
    with override_settings(TIME_ZONE="America/Chicago"):
        assert signing.form_expiry_for(form=by_date, signed_at=signed_at) == (
            datetime.combine(date(2027, 6, 30), time.max, tzinfo=ZoneInfo("America/Chicago")), ""
        )
    assert signing.form_expiry_for(form=by_event, signed_at=signed_at) == (
        None, "when you no longer rent equipment from us"
    )


def test_event_form_signature_stores_the_event_and_no_date(client):
    patient = patient_make()
    purpose = purpose_make()
    form_version = form_published_make(
        purpose, expiry_kind=AuthorizationForm.ExpiryKind.EVENT, expiry_months=None,
        expiry_event="when you no longer rent equipment from us",
    )
    authorization = signing.authorization_sign(
        patient_id=patient.pk, form_id=form_version.pk, shown_text_hash=text_hash(form_text(form_version)),
        signature_name="Pat Doe", intent_confirmed=True, signed_by_representative=False,
    )
    assert authorization.expires_at is None
    assert authorization.expiry_event == "when you no longer rent equipment from us"


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [("unknown", 404, "This link does not work"), ("expired", 410, "This link has expired"),
     ("used", 410, "This link was already used")],
)
def test_bad_expired_or_used_invitation_gets_a_clear_page(client, invited, case, status, words):
    """Token abuse: a clear page, never a 500, and no code sent."""
    invitation, token = invited[3], invited[4]
    if case == "unknown":
        token = "not-a-real-token-" + "x" * 30
    elif case == "expired":
        Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        Invitation.objects.filter(pk=invitation.pk).update(used_at=timezone.now())
    outbox_before = len(mail.outbox)

    response = client.get(f"/my/invite/{token}/")

    assert response.status_code == status
    assert words in response.content.decode()
    assert len(mail.outbox) == outbox_before


def test_signed_invitation_link_cannot_be_used_again(client, invited):
    purpose, form_version, token = invited[1], invited[2], invited[4]
    prove_email(client, token)
    client.post(f"/my/sign/{purpose.pk}/", sign_data(form_version))

    response = client.get(f"/my/invite/{token}/")

    assert response.status_code == 410
    assert "This link was already used" in response.content.decode()
