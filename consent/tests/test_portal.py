"""The patient portal at /my/: signing in with an emailed code, seeing one's own authorizations and copies,
stopping and renewing them, one switch per purpose. R-REVOKE-ANYTIME, R-NO-CONDITIONING, R-NO-PHI-LEAK."""
import re
import time
from datetime import timedelta

import pytest
from django.core import mail

from audit.models import AuditEvent
from consent.documents import form_text, text_hash
from consent.models import Authorization, Revocation
from consent.portal_session import PORTAL_IDLE_SECONDS
from consent.selectors.coverage import authorization_covering_list
from consent.selectors.form_versions import form_version_current
from consent.services import portal as portal_services
from consent.services import signing
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_and_media")]


def _last_code() -> str:
    return re.search(r"Your code is: (\d{6})", mail.outbox[-1].body).group(1)


def portal_sign_in(client, patient) -> None:
    client.post("/my/sign-in/", {"email": patient.email})
    response = client.post("/my/code/", {"code": _last_code()})
    assert response.status_code == 302 and response.url == "/my/"


def test_portal_pages_need_the_emailed_code(client):
    patient = patient_make()
    authorization = authorization_make(patient=patient, purpose=purpose_make())

    for url in ("/my/", f"/my/authorizations/{authorization.pk}/pdf/", f"/my/authorizations/{authorization.pk}/stop/"):
        response = client.get(url)
        assert response.status_code == 302 and response.url == "/my/sign-in/", url


def test_sign_in_page_does_not_reveal_whether_an_address_is_known(client):
    """R-NO-PHI-LEAK: who is a patient stays private: the same pages for a known and an unknown address."""
    patient_make(email="known@example.org")

    known = client.post("/my/sign-in/", {"email": "Known@Example.org"}, follow=True)
    known_mail = len(mail.outbox)
    client.cookies.clear()
    unknown = client.post("/my/sign-in/", {"email": "stranger@example.org"}, follow=True)

    assert known.status_code == unknown.status_code == 200
    assert known.redirect_chain == unknown.redirect_chain == [("/my/code/", 302)]

    def visible(response):
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())

    assert visible(known) == visible(unknown)
    assert "If the address you typed is on our records, we sent a code to it." in visible(known)
    assert known_mail == 1 and len(mail.outbox) == 1  # only the known address got a code
    # A guess at the unknown address's code is answered like any wrong code.
    wrong = client.post("/my/code/", {"code": "123456"})
    assert "That code is not right" in wrong.content.decode()


def test_wrong_code_five_times_locks_the_code_with_a_clear_page(client):
    """R-AUTH-ESIGN identity: at most 5 tries per code, then a new code is needed."""
    patient = patient_make()
    client.post("/my/sign-in/", {"email": patient.email})
    right = _last_code()
    wrong = f"{(int(right) + 1) % 10**6:06d}"

    answers = [client.post("/my/code/", {"code": wrong}) for _ in range(5)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 429]
    assert "Too many wrong codes" in answers[-1].content.decode()
    after = client.post("/my/code/", {"code": right})  # even the right code no longer works
    assert after.status_code == 410 and "You need a new code" in after.content.decode()
    assert client.get("/my/").status_code == 302
    assert AuditEvent.objects.filter(action="patient.code_locked", object_id=str(patient.pk)).count() == 1


def test_codes_are_throttled_per_patient(client):
    patient = patient_make()
    for _ in range(portal_services.CODES_PER_HOUR + 2):
        client.post("/my/sign-in/", {"email": patient.email})

    assert len(mail.outbox) == portal_services.CODES_PER_HOUR
    assert AuditEvent.objects.filter(action="patient.code_throttled", object_id=str(patient.pk)).count() == 2


def test_a_code_older_than_its_lifetime_does_not_work(client, monkeypatch):
    patient = patient_make()
    client.post("/my/sign-in/", {"email": patient.email})
    code = _last_code()
    later = time.time() + portal_services.CODE_LIFETIME_SECONDS + 1
    monkeypatch.setattr(portal_services.time, "time", lambda: later)

    response = client.post("/my/code/", {"code": code})

    assert response.status_code == 410 and "You need a new code" in response.content.decode()


def test_portal_session_ends_after_30_idle_minutes(client, monkeypatch):
    patient = patient_make()
    portal_sign_in(client, patient)
    assert client.get("/my/").status_code == 200
    later = time.time() + PORTAL_IDLE_SECONDS + 1
    monkeypatch.setattr("consent.portal_session.time.time", lambda: later)

    assert client.get("/my/").url == "/my/sign-in/"


def test_r_no_conditioning_portal_works_for_a_patient_who_signed_nothing(client):
    """R-NO-CONDITIONING: nothing in the portal depends on signing; the page says care does not depend on it."""
    patient = patient_make()
    purpose = purpose_make(name="Diabetes education program")
    form_published_make(purpose)

    portal_sign_in(client, patient)
    page = client.get("/my/")

    body = page.content.decode()
    assert page.status_code == 200
    assert "Your care does not depend on any of these choices." in body
    assert "You have not signed any form with us. That is fine: nothing else changes." in body
    assert "Diabetes education program" in body and "You do not receive these" in body
    assert f'href="/my/sign/{purpose.pk}/"' in body


def test_portal_lists_each_authorization_with_its_status(client):
    patient = patient_make()
    active_purpose, expired_purpose, revoked_purpose = (purpose_make(name=n) for n in ("Masks", "Braces", "Wellness"))
    for purpose in (active_purpose, expired_purpose, revoked_purpose):
        form_published_make(purpose)
    active = authorization_make(patient=patient, purpose=active_purpose)
    expired = authorization_make(
        patient=patient, purpose=expired_purpose, signed_ago=timedelta(days=400), expires_in=-timedelta(days=1)
    )
    revoked = authorization_make(patient=patient, purpose=revoked_purpose)
    portal_services.portal_authorization_revoke(patient_id=patient.pk, authorization_id=revoked.pk)

    rows = portal_services.portal_authorization_list(patient_id=patient.pk)
    statuses = {row.authorization.pk: row.status for row in rows}
    portal_sign_in(client, patient)
    body = client.get("/my/").content.decode()

    assert statuses == {active.pk: "active", expired.pk: "expired", revoked.pk: "revoked"}
    assert "Stopped by you" in body and "Expired" in body and "Active" in body
    assert f'href="/my/authorizations/{active.pk}/stop/"' in body
    assert f'href="/my/sign/{expired_purpose.pk}/"' in body and f'href="/my/sign/{revoked_purpose.pk}/"' in body
    assert body.count("You receive these") == 1


def test_r_revoke_anytime_portal_revocation_ends_coverage_at_once_and_is_audited(client):
    """R-REVOKE-ANYTIME, R-REVOKE-WRITTEN: a confirmation page, then the revocation, effective when it commits."""
    patient = patient_make()
    purpose = purpose_make(name="CPAP supplies")
    authorization = authorization_make(patient=patient, purpose=purpose)
    portal_sign_in(client, patient)

    confirm = client.get(f"/my/authorizations/{authorization.pk}/stop/")
    assert confirm.status_code == 200 and "Yes, stop these messages" in confirm.content.decode()
    assert authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists()

    response = client.post(f"/my/authorizations/{authorization.pk}/stop/")

    assert response.status_code == 302 and response.url == "/my/"
    assert not authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).exists()
    assert Revocation.objects.get(authorization=authorization).channel == "portal"
    event = AuditEvent.objects.get(action="authorization.revoked", object_id=str(patient.pk))
    assert event.actor_role == "patient" and event.details["channel"] == "portal"
    assert event.details["authorization_ids"] == [authorization.pk]
    assert "will not send you messages about “CPAP supplies” any more" in client.get("/my/").content.decode()


def test_revoking_an_ended_authorization_changes_nothing(client):
    patient = patient_make()
    expired = authorization_make(
        patient=patient, purpose=purpose_make(), signed_ago=timedelta(days=400), expires_in=-timedelta(days=1)
    )
    portal_sign_in(client, patient)

    response = client.post(f"/my/authorizations/{expired.pk}/stop/", follow=True)

    assert "This has already ended" in response.content.decode()
    assert not Revocation.objects.exists()


def test_portal_shows_only_the_session_patients_authorizations(client):
    """R-MIN-NECESSARY: another patient's authorization, copy or revocation page is a 404, like a missing one."""
    purpose = purpose_make(name="Orthopaedic braces")
    me, other = patient_make(), patient_make()
    form_published_make(purpose)
    mine = _signed(me, purpose)
    theirs = _signed(other, purpose)
    portal_sign_in(client, me)

    body = client.get("/my/").content.decode()

    assert f"/my/authorizations/{mine.pk}/pdf/" in body
    assert f"/my/authorizations/{theirs.pk}/" not in body
    for url in (
        f"/my/authorizations/{theirs.pk}/pdf/",
        f"/my/authorizations/{theirs.pk}/stop/",
        f"/my/signed/{theirs.pk}/",
        "/my/authorizations/999999/pdf/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/my/authorizations/{theirs.pk}/stop/").status_code == 404
    assert not Revocation.objects.exists()


def _signed(patient, purpose) -> Authorization:
    form_version = form_version_current(purpose_id=purpose.pk)
    return signing.authorization_sign(
        patient_id=patient.pk, form_id=form_version.pk, shown_text_hash=text_hash(form_text(form_version)),
        signature_name="Test Signer", intent_confirmed=True, signed_by_representative=False,
    )


def test_patient_downloads_their_pdf_and_the_download_is_audited(client):
    """R-AUTH-COPY: the copy is there to download, private and not cached."""
    patient = patient_make()
    purpose = purpose_make()
    form_published_make(purpose)
    authorization = _signed(patient, purpose)
    portal_sign_in(client, patient)

    response = client.get(f"/my/authorizations/{authorization.pk}/pdf/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Cache-Control"] == "private, no-store"
    assert b"".join(response.streaming_content)[:5] == b"%PDF-"
    assert AuditEvent.objects.filter(action="authorization.pdf_downloaded", object_id=str(authorization.pk)).exists()


def test_renewing_an_expired_authorization_signs_the_current_form(client):
    patient = patient_make()
    purpose = purpose_make()
    authorization_make(patient=patient, purpose=purpose, signed_ago=timedelta(days=400), expires_in=-timedelta(days=1))
    form_published_make(purpose)
    current = form_published_make(purpose, purpose_description="To tell you about new supplies, in plain words.")
    portal_sign_in(client, patient)

    page = client.get(f"/my/sign/{purpose.pk}/").content.decode()
    client.post(
        f"/my/sign/{purpose.pk}/",
        {"text_hash": text_hash(form_text(current)), "signer": "patient", "signature_name": "Pat Doe", "intent": "on"},
    )

    assert "in plain words" in page
    renewed = authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).get()
    assert renewed.form_version == current


def test_signing_page_for_a_purpose_already_covered_offers_nothing_to_sign(client):
    patient = patient_make()
    purpose = purpose_make()
    form_published_make(purpose)
    authorization_make(patient=patient, purpose=purpose)
    portal_sign_in(client, patient)

    page = client.get(f"/my/sign/{purpose.pk}/").content.decode()
    client.post(f"/my/sign/{purpose.pk}/", {"signature_name": "Pat", "intent": "on", "signer": "patient"})

    assert "You already signed this form" in page
    assert Authorization.objects.filter(patient=patient).count() == 1


def test_purpose_without_a_published_form_has_no_signing_page(client):
    patient = patient_make()
    portal_sign_in(client, patient)

    assert client.get(f"/my/sign/{purpose_make().pk}/").status_code == 404
    assert client.get("/my/sign/999999/").status_code == 404


def test_sign_out_ends_the_portal_session(client):
    patient = patient_make()
    portal_sign_in(client, patient)

    client.post("/my/sign-out/")

    assert client.get("/my/").status_code == 302


def test_bad_input_gets_clear_messages_not_errors(client):
    assert "This does not look like an email address" in client.post("/my/sign-in/", {"email": "nope"}).content.decode()
    assert client.get("/my/code/").status_code == 200  # nothing pending: a page saying to ask for a code
    assert "You need a new code" in client.post("/my/code/", {"code": "1"}).content.decode()
    assert client.get("/my/invite/%20/").status_code == 404
