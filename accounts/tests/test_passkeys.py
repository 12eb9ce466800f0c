"""Passkeys as a second factor (R-SEC-MFA): who may reach django-otp-webauthn's endpoints, and what a passkey
proves. The signatures here are real (an EC P-256 key standing in for an authenticator), checked by py_webauthn.
test_passkeys_browser.py walks the same rules in Chromium with a virtual authenticator."""
import base64
import hashlib
import json
import os

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings as django_settings
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp_webauthn.models import WebAuthnCredential

from accounts.tests.factories import staff_make
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

ROLES = ["marketer", "compliance officer", "administrator"]
ORIGIN = "http://testserver"
VERIFY_BEGIN = "/account/two-factor/passkeys/verify/begin/"
VERIFY_COMPLETE = "/account/two-factor/passkeys/verify/complete/"
ADD_BEGIN = "/account/two-factor/passkeys/add/begin/"
ADD_COMPLETE = "/account/two-factor/passkeys/add/complete/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(autouse=True)
def relying_party(settings):
    """The test client's host is the relying party, as live_server's is in the browser test."""
    settings.OTP_WEBAUTHN_RP_ID = "testserver"
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [ORIGIN]


class Authenticator:
    """What a platform authenticator does for a second factor: holds an EC key, signs the server's challenge."""

    def __init__(self, user, name: str = "Work laptop"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        cose_key = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        self.credential_id = os.urandom(32)
        self.sign_count = 0
        self.device = WebAuthnCredential.objects.create(
            user=user,
            name=name,
            credential_id=self.credential_id,
            public_key=cbor2.dumps(cose_key),
            sign_count=0,
            aaguid="00000000-0000-0000-0000-000000000000",
        )

    def assertion(self, challenge: str, *, origin: str = ORIGIN, tamper: bool = False) -> dict:
        self.sign_count += 1
        client_data = json.dumps({"type": "webauthn.get", "challenge": challenge, "origin": origin}).encode()
        authenticator_data = (
            hashlib.sha256(django_settings.OTP_WEBAUTHN_RP_ID.encode()).digest()
            + b"\x01"  # user present
            + self.sign_count.to_bytes(4, "big")
        )
        # Tampered: a well-formed signature over other client data (what a forged or altered answer amounts to).
        signed = client_data + b" " if tamper else client_data
        signature = self.key.sign(authenticator_data + hashlib.sha256(signed).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": _b64(self.credential_id),
            "rawId": _b64(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": _b64(client_data),
                "authenticatorData": _b64(authenticator_data),
                "signature": _b64(signature),
            },
            "clientExtensionResults": {},
        }


def _use_passkey(client, authenticator: Authenticator, **kwargs):
    options = client.post(VERIFY_BEGIN).json()
    return client.post(
        f"{VERIFY_COMPLETE}?next=/campaigns/",
        authenticator.assertion(options["challenge"], **kwargs),
        content_type="application/json",
    )


def _verified_with(client, user, device) -> None:
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


@pytest.mark.parametrize("role", ROLES)
def test_r_sec_mfa_passkey_verification_opens_before_the_second_factor(client, role):
    """R-SEC-MFA: after the password, before any second factor, every staff role can ask for a passkey challenge
    for its own passkeys (like the code page)."""
    user = staff_make(role=role, with_totp=True)
    authenticator = Authenticator(user)
    client.force_login(user)

    response = client.post(VERIFY_BEGIN)

    assert response.status_code == 200
    options = response.json()
    assert options["rpId"] == "testserver"
    assert [c["id"] for c in options["allowCredentials"]] == [_b64(authenticator.credential_id)]


@pytest.mark.parametrize("path", [VERIFY_BEGIN, VERIFY_COMPLETE, ADD_BEGIN, ADD_COMPLETE])
def test_r_sec_mfa_no_passkey_endpoint_for_an_anonymous_visitor(client, path):
    """R-SEC-MFA: a passkey is a second factor only, never a sign-in on its own (no passwordless login)."""
    response = client.post(path, {}, content_type="application/json")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert django_settings.OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN is False
    assert "otp_webauthn_authentication_state" not in client.session


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", [ADD_BEGIN, ADD_COMPLETE])
def test_r_sec_mfa_adding_a_passkey_needs_the_second_factor_first(client, role, path):
    """R-SEC-MFA: a password alone cannot add a passkey, or a stolen password would let the thief add theirs."""
    user = staff_make(role=role, with_totp=True)
    client.force_login(user)

    response = client.post(path, {}, content_type="application/json")

    assert response.status_code == 302
    assert response["Location"].startswith("/account/two-factor/?next=")
    assert "otp_webauthn_register_state" not in client.session
    assert not WebAuthnCredential.objects.filter(user=user).exists()


@pytest.mark.parametrize("role", ROLES)
def test_r_sec_mfa_a_verified_staff_member_may_start_adding_a_passkey(verified_client, role):
    user = verified_client.sign_in(role=role)

    response = verified_client.post(ADD_BEGIN)

    assert response.status_code == 200
    options = response.json()
    assert options["rp"] == {"name": django_settings.OTP_WEBAUTHN_RP_NAME, "id": "testserver"}
    assert options["user"]["name"] == user.get_username()
    assert verified_client.session["otp_webauthn_register_state"]["challenge"] == options["challenge"]


def test_r_min_necessary_a_signed_in_user_without_a_role_cannot_add_a_passkey(verified_client):
    verified_client.sign_in(user=staff_make(role=""))

    assert verified_client.post(ADD_BEGIN).status_code == 404


@pytest.mark.parametrize("role", ROLES)
def test_r_sec_mfa_a_passkey_alone_satisfies_the_second_factor(client, role):
    """R-SEC-MFA: a staff member whose only device is a passkey is offered it, passes with it, and is audited."""
    user = staff_make(role=role)
    authenticator = Authenticator(user)
    client.force_login(user)
    assert client.get("/")["Location"].startswith("/account/two-factor/?next=")

    page = client.get("/account/two-factor/")
    assert page.status_code == 200 and b"Use a passkey" in page.content

    response = _use_passkey(client, authenticator)

    assert response.status_code == 200
    assert response.json() == {"id": authenticator.device.pk, "redirect_url": "/campaigns/"}
    assert client.get("/").status_code == 200
    event = AuditEvent.objects.get(actor=user, action="mfa.verified")
    assert event.object_id == f"passkey/{authenticator.device.pk}"
    assert event.details == {"kind": "passkey"}
    # The passkey at sign-in starts the step-up grace as a code does (ADR 0024): one gesture from sign-in to the
    # first approval or export.
    from accounts import reentry

    assert reentry.stepup_grace_remaining(client.session, user) > 0
    assert client.session[reentry.STEPUP_GRACE_SESSION_KEY]["by"] == "sign-in"


def test_r_sec_mfa_a_tampered_passkey_answer_is_refused_and_audited(client):
    """R-SEC-MFA: a signature that does not match leaves the session unverified; the refusal is audited."""
    user = staff_make(role="marketer", with_totp=True)
    authenticator = Authenticator(user)
    client.force_login(user)

    response = _use_passkey(client, authenticator, tamper=True)

    assert response.status_code == 422
    assert response.json()["code"] == "invalid_authentication_response"
    assert client.get("/")["Location"].startswith("/account/two-factor/")
    event = AuditEvent.objects.get(actor=user, action="mfa.verification_failed")
    assert event.details == {"kind": "passkey", "reason": "invalid_authentication_response"}
    assert not AuditEvent.objects.filter(action="mfa.verified").exists()


def test_r_sec_mfa_a_passkey_from_another_origin_is_refused(client):
    """A look-alike site relaying the challenge gets a signature over its own origin: refused (phishing-resistant)."""
    user = staff_make(role="marketer", with_totp=True)
    authenticator = Authenticator(user)
    client.force_login(user)

    response = _use_passkey(client, authenticator, origin="https://riverside-health.example.phish")

    assert response.status_code == 422
    assert client.get("/")["Location"].startswith("/account/two-factor/")
    assert AuditEvent.objects.filter(actor=user, action="mfa.verification_failed").count() == 1


def test_r_sec_mfa_another_users_passkey_does_not_verify_this_user(client):
    user = staff_make(role="marketer", with_totp=True)
    other = Authenticator(staff_make(role="administrator", with_totp=True))
    client.force_login(user)

    response = _use_passkey(client, other)

    assert response.status_code == 403
    assert response.json()["code"] == "credential_user_mismatch"
    assert client.get("/")["Location"].startswith("/account/two-factor/")
    assert AuditEvent.objects.get(actor=user, action="mfa.verification_failed").details["reason"] == (
        "credential_user_mismatch"
    )


@pytest.mark.parametrize(
    "begun, body, code",
    [
        (True, "{not json", "malformed_request"),
        (True, json.dumps({"id": "x"}), "invalid_json_structure"),
        (True, json.dumps([1, 2]), "invalid_json_structure"),
        (False, json.dumps({"id": "x"}), "invalid_state"),
    ],
    ids=["not-json", "not-a-credential", "a-list", "no-challenge-begun"],
)
def test_r_sec_mfa_a_malformed_passkey_answer_is_a_clear_refusal_not_a_server_error(client, begun, body, code):
    user = staff_make(role="marketer", with_totp=True)
    Authenticator(user)
    client.force_login(user)
    if begun:
        client.post(VERIFY_BEGIN)

    response = client.post(VERIFY_COMPLETE, body, content_type="application/json")

    assert 400 <= response.status_code < 500
    assert response.json()["code"] == code and response.json()["detail"]
    assert AuditEvent.objects.filter(actor=user, action="mfa.verification_failed").count() == 1


def test_r_sec_mfa_a_challenge_is_used_once(client):
    """Replaying a captured answer fails: the challenge left the session with its first use."""
    user = staff_make(role="marketer")
    authenticator = Authenticator(user)
    client.force_login(user)
    options = client.post(VERIFY_BEGIN).json()
    answer = authenticator.assertion(options["challenge"])
    assert client.post(VERIFY_COMPLETE, answer, content_type="application/json").status_code == 200
    client.logout()
    client.force_login(user)

    replay = client.post(VERIFY_COMPLETE, answer, content_type="application/json")

    assert replay.status_code == 400 and replay.json()["code"] == "invalid_state"
    assert client.get("/")["Location"].startswith("/account/two-factor/")


def test_r_sec_mfa_passkeys_are_listed_and_removed_like_other_devices(client):
    user = staff_make(role="marketer", with_totp=True)
    authenticator = Authenticator(user, name="Work laptop")
    _verified_with(client, user, user.totpdevice_set.get())

    page = client.get(reverse("otp_devices"))
    assert b"Work laptop" in page.content and b"Passkey" in page.content and b"Add a passkey" in page.content

    response = client.post(reverse("otp_device_remove"), {"device": authenticator.device.persistent_id})

    assert response.status_code == 302
    assert not WebAuthnCredential.objects.filter(user=user).exists()
    event = AuditEvent.objects.get(actor=user, action="mfa.device_removed")
    assert event.object_id == f"passkey/{authenticator.device.pk}"


def test_r_sec_mfa_the_last_authenticator_app_stays_while_passkeys_remain(client):
    """R-SEC-MFA: the last authenticator app (whose code works on any computer) cannot be removed while a passkey
    remains; with a second app it can."""
    user = staff_make(role="compliance officer", with_totp=True)
    app = user.totpdevice_set.get()
    Authenticator(user, name="Work laptop")
    _verified_with(client, user, app)

    refused = client.post(reverse("otp_device_remove"), {"device": app.persistent_id}, follow=True)

    assert b"Keep one authenticator app" in refused.content
    assert user.totpdevice_set.filter(pk=app.pk).exists()
    assert not AuditEvent.objects.filter(actor=user, action="mfa.device_removed").exists()
    user.totpdevice_set.create(name="Second phone", confirmed=True)
    client.post(reverse("otp_device_remove"), {"device": app.persistent_id})
    assert not user.totpdevice_set.filter(pk=app.pk).exists()


def test_r_sec_mfa_the_code_page_offers_no_passkey_to_a_user_without_one(client):
    client.force_login(staff_make(role="marketer", with_totp=True))

    page = client.get("/account/two-factor/")

    assert page.status_code == 200 and b"Use a passkey" not in page.content


# --- The step-up by passkey before approving, sending, scheduling, cancelling and exporting (accounts.reentry) ---
STEPUP_BEGIN = "/account/two-factor/passkeys/step-up/begin/"
STEPUP_COMPLETE = "/account/two-factor/passkeys/step-up/complete/"


def _stepup(client, authenticator: Authenticator, **kwargs):
    options = client.post(STEPUP_BEGIN).json()
    return client.post(STEPUP_COMPLETE, authenticator.assertion(options["challenge"], **kwargs),
                       content_type="application/json")


def _reentry_failures(user) -> list:
    return list(AuditEvent.objects.filter(actor=user, action="mfa.reentry_failed").values_list("details", flat=True))


@pytest.mark.parametrize("path", [STEPUP_BEGIN, STEPUP_COMPLETE])
def test_r_sec_mfa_the_passkey_stepup_is_for_verified_staff_only(client, path):
    """R-SEC-MFA: the step-up confirms an action of a verified staff member: anonymous visitors go to sign in,
    a password alone to the second factor, a signed-in user without a role gets a 404."""
    assert client.post(path, {}, content_type="application/json")["Location"].startswith("/accounts/login/")
    user = staff_make(role="compliance officer", with_totp=True)
    Authenticator(user)
    client.force_login(user)
    unverified = client.post(path, {}, content_type="application/json")
    assert unverified["Location"].startswith("/account/two-factor/?next=")
    nobody = staff_make(role="", with_totp=True)
    Authenticator(nobody)
    _verified_with(client, nobody, nobody.totpdevice_set.get())
    assert client.post(path, {}, content_type="application/json").status_code == 404
    assert "hipaamail_passkey_stepup_state" not in client.session
    assert "reentry_passkey_stepup" not in client.session


@pytest.mark.parametrize("role", ["compliance officer", "administrator"])
def test_r_sec_mfa_a_passkey_stepup_grants_one_nonce_and_leaves_the_login_alone(client, role):
    """R-SEC-MFA: the user's own passkey passes the step-up: a nonce for the page, kept in the session for this
    user; the session stays verified by the device it signed in with, and no sign-in event is recorded."""
    user = staff_make(role=role, with_totp=True)
    authenticator = Authenticator(user)
    app = user.totpdevice_set.get()
    _verified_with(client, user, app)

    options = client.post(STEPUP_BEGIN).json()
    assert [c["id"] for c in options["allowCredentials"]] == [_b64(authenticator.credential_id)]
    assert options["rpId"] == "testserver"
    response = client.post(STEPUP_COMPLETE, authenticator.assertion(options["challenge"]),
                           content_type="application/json")

    assert response.status_code == 200
    nonce = response.json()["nonce"]
    grant = client.session["reentry_passkey_stepup"]
    assert (grant["user"], grant["nonce"]) == (user.pk, nonce) and len(nonce) >= 40
    assert client.session[DEVICE_ID_SESSION_KEY] == app.persistent_id
    assert "hipaamail_passkey_stepup_state" not in client.session
    assert not AuditEvent.objects.filter(actor=user, action__in=["mfa.verified", "mfa.reentry_failed"]).exists()
    authenticator.device.refresh_from_db()
    assert authenticator.device.sign_count == 1


def test_r_sec_mfa_another_users_passkey_gives_no_stepup(client):
    """R-SEC-MFA: a colleague's passkey (in the same browser, say) does not confirm this user's action."""
    user = staff_make(role="compliance officer", with_totp=True)
    Authenticator(user)
    colleague = Authenticator(staff_make(role="compliance officer", with_totp=True))
    _verified_with(client, user, user.totpdevice_set.get())

    response = _stepup(client, colleague)

    assert response.status_code == 403 and response.json()["code"] == "credential_user_mismatch"
    assert "reentry_passkey_stepup" not in client.session
    assert _reentry_failures(user) == [{"for": "passkey"}]


@pytest.mark.parametrize(
    "kwargs",
    [{"tamper": True}, {"origin": "https://riverside-health.example.phish"}],
    ids=["tampered", "another-origin"],
)
def test_r_sec_mfa_a_bad_passkey_answer_gives_no_stepup(client, kwargs):
    user = staff_make(role="compliance officer", with_totp=True)
    authenticator = Authenticator(user)
    _verified_with(client, user, user.totpdevice_set.get())

    response = _stepup(client, authenticator, **kwargs)

    assert response.status_code == 422 and response.json()["code"] == "invalid_authentication_response"
    assert "reentry_passkey_stepup" not in client.session
    assert _reentry_failures(user) == [{"for": "passkey"}]


@pytest.mark.parametrize(
    "begin, body, code",
    [
        (STEPUP_BEGIN, "{not json", "malformed_request"),
        (STEPUP_BEGIN, json.dumps([1, 2]), "invalid_json_structure"),
        (STEPUP_BEGIN, json.dumps({"id": "x", "rawId": 5, "response": None}), "invalid_json_structure"),
        (None, json.dumps({"id": "x"}), "invalid_state"),
        (VERIFY_BEGIN, json.dumps({"id": "x"}), "invalid_state"),
    ],
    ids=["not-json", "a-list", "nonsense", "no-challenge-begun", "a-sign-in-challenge"],
)
def test_r_sec_mfa_a_malformed_stepup_answer_is_a_clear_refusal_not_a_server_error(client, begin, body, code):
    """R-SEC-MFA: whatever arrives, a 4xx JSON answer, audited; a sign-in challenge does not complete a step-up."""
    user = staff_make(role="compliance officer", with_totp=True)
    Authenticator(user)
    _verified_with(client, user, user.totpdevice_set.get())
    if begin:
        client.post(begin)

    response = client.post(STEPUP_COMPLETE, body, content_type="application/json")

    assert 400 <= response.status_code < 500
    assert response.json()["code"] == code and response.json()["detail"]
    assert "reentry_passkey_stepup" not in client.session
    assert _reentry_failures(user) == [{"for": "passkey"}]


def test_r_sec_mfa_a_stepup_answer_is_used_once(client):
    user = staff_make(role="compliance officer", with_totp=True)
    authenticator = Authenticator(user)
    _verified_with(client, user, user.totpdevice_set.get())
    options = client.post(STEPUP_BEGIN).json()
    answer = authenticator.assertion(options["challenge"])
    assert client.post(STEPUP_COMPLETE, answer, content_type="application/json").status_code == 200
    session = client.session
    del session["reentry_passkey_stepup"]
    session.save()

    replay = client.post(STEPUP_COMPLETE, answer, content_type="application/json")

    assert replay.status_code == 400 and replay.json()["code"] == "invalid_state"
    assert "reentry_passkey_stepup" not in client.session


def test_r_sec_mfa_no_stepup_challenge_for_a_user_without_a_passkey(verified_client):
    verified_client.sign_in(role="compliance officer")

    response = verified_client.post(STEPUP_BEGIN)

    assert response.status_code == 400 and response.json()["code"] == "no_passkey"
    assert "hipaamail_passkey_stepup_state" not in verified_client.session


def test_r_sec_mfa_neither_code_nor_passkey_is_refused_like_a_wrong_code(client):
    user = staff_make(role="compliance officer", with_totp=True)
    Authenticator(user)
    _verified_with(client, user, user.totpdevice_set.get())

    response = client.post("/reports/compliance-summary/", {
        "summary-date_from": "2026-01-01", "summary-date_to": "2026-01-31", "summary-format": "csv",
        "summary-code": "", "summary-passkey_stepup": "",
    })

    assert response.status_code == 400
    assert "That code did not work. Enter the current code from your authenticator app." in response.content.decode()
    assert not AuditEvent.objects.filter(action__in=["report.exported", "mfa.reentry_failed"]).exists()


def test_r_sec_mfa_an_unexpected_error_in_the_stepup_check_is_a_refusal_not_a_server_error(client, monkeypatch):
    """Whatever fails inside the check (here the helper itself), the answer is a 4xx refusal, audited."""
    from accounts import mfa

    user = staff_make(role="compliance officer", with_totp=True)
    authenticator = Authenticator(user)
    _verified_with(client, user, user.totpdevice_set.get())

    def broken(self, **kwargs):
        raise KeyError("response")

    monkeypatch.setattr(mfa.PasskeyHelper, "authenticate_complete", broken)
    response = _stepup(client, authenticator)

    assert response.status_code == 422 and response.json()["code"] == "unreadable_answer"
    assert "reentry_passkey_stepup" not in client.session
    assert _reentry_failures(user) == [{"for": "passkey"}]
