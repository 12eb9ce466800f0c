"""Deny by default, and a second factor before any staff page (R-SEC-MFA, R-SEC-AUTOLOGOFF, R-MIN-NECESSARY)."""
import time

import pytest
from django.conf import settings
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import PASSWORD, staff_make
from audit.models import AuditEvent
from hipaamail.middleware import StaffSessionLifetimeMiddleware

pytestmark = pytest.mark.django_db

STAFF_PAGES = ["/", "/admin/", "/account/two-factor/devices/", "/accounts/password/change/"]


def _code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_anonymous_user_gets_the_sign_in_page(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_r_sec_mfa_staff_without_second_factor_gets_no_staff_page(client, path):
    """R-SEC-MFA: a password alone opens no staff page, the Django admin included."""
    user = staff_make(role="administrator", with_totp=True)
    client.force_login(user)

    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/account/two-factor/?next=")


def test_r_sec_mfa_staff_without_a_device_is_sent_to_enroll(client):
    client.force_login(staff_make(role="marketer"))

    response = client.get("/", follow=True)

    assert response.redirect_chain[-1][0].startswith("/account/two-factor/setup/")
    assert b"<svg" in response.content  # the QR code


def test_verified_staff_member_sees_the_staff_pages(verified_client):
    verified_client.sign_in(role="administrator")

    for path in STAFF_PAGES:
        assert verified_client.get(path).status_code == 200, path


def test_r_min_necessary_signed_in_user_without_a_role_gets_not_found(verified_client):
    verified_client.sign_in(user=staff_make(role=""))

    assert verified_client.get("/").status_code == 404


def test_r_sec_mfa_sign_in_with_password_then_totp(client):
    """The whole path: email and password through allauth, then the TOTP code; both audited."""
    user = staff_make(role="marketer", email="mara@riverside-health.example", with_totp=True)
    device = TOTPDevice.objects.get(user=user)

    response = client.post(reverse("account_login"), {"login": "mara@riverside-health.example", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/")["Location"].startswith("/account/two-factor/")

    wrong = client.post("/account/two-factor/", {"token": "000000" if _code(device) != "000000" else "111111"})
    assert wrong.status_code == 200 and b"did not work" in wrong.content
    assert client.get("/").status_code == 302

    device.refresh_from_db()
    device.throttling_failure_count = 0
    device.save()
    right = client.post("/account/two-factor/", {"token": _code(device), "next": "/"})
    assert right.status_code == 302 and right["Location"] == "/"
    assert client.get("/").status_code == 200
    actions = list(AuditEvent.objects.filter(actor=user).values_list("action", flat=True))
    assert actions == ["account.signed_in", "mfa.verification_failed", "mfa.verified"]


def test_r_sec_mfa_enrollment_confirms_device_and_shows_recovery_codes_once(client):
    user = staff_make(role="compliance officer")
    client.force_login(user)
    client.get("/account/two-factor/setup/")
    device = TOTPDevice.objects.get(user=user, confirmed=False)

    response = client.post("/account/two-factor/setup/", {"token": _code(device)})

    assert response["Location"] == "/account/two-factor/recovery-codes/"
    page = client.get("/account/two-factor/recovery-codes/")
    codes = [t.token for t in StaticToken.objects.filter(device__user=user)]
    assert len(codes) == 10
    assert all(code.encode() in page.content for code in codes)
    assert client.get("/account/two-factor/recovery-codes/")["Location"] == "/account/two-factor/devices/"
    device.refresh_from_db()
    assert device.confirmed is True
    assert client.get("/").status_code == 200


def test_r_sec_mfa_a_password_alone_cannot_enroll_another_device(client):
    """With a device already enrolled, the setup page asks for that factor first; otherwise a stolen
    password would be enough to add the thief's phone."""
    user = staff_make(role="marketer", with_totp=True)
    client.force_login(user)

    response = client.get("/account/two-factor/setup/")

    assert response.status_code == 302
    assert response["Location"].startswith("/account/two-factor/?next=")
    assert TOTPDevice.objects.filter(user=user).count() == 1


def test_recovery_code_works_once(client):
    user = staff_make(role="marketer", with_totp=True)
    from accounts import mfa

    codes = mfa.recovery_codes_issue(user=user)
    client.force_login(user)

    assert client.post("/account/two-factor/", {"token": codes[0]}).status_code == 302
    assert client.get("/").status_code == 200
    client.logout()
    client.force_login(user)
    assert client.post("/account/two-factor/", {"token": codes[0]}).status_code == 200


def test_r_sec_autologoff_idle_timeout_is_fifteen_minutes():
    """R-SEC-AUTOLOGOFF: the session cookie lives 15 minutes and is renewed on each request."""
    assert settings.SESSION_COOKIE_AGE == 15 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST is True


def test_r_sec_autologoff_absolute_lifetime_ends_an_active_session(verified_client):
    """R-SEC-AUTOLOGOFF: however active, a session ends at its absolute lifetime."""
    verified_client.sign_in(role="marketer")
    assert verified_client.get("/").status_code == 200
    session = verified_client.session
    session[StaffSessionLifetimeMiddleware.SESSION_KEY] = (
        time.time() - settings.STAFF_SESSION_ABSOLUTE_LIFETIME.total_seconds() - 1
    )
    session.save()

    response = verified_client.get("/")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert verified_client.get("/").status_code == 302


def test_sign_in_is_throttled_after_repeated_failures(client, settings):
    """allauth's login throttling: after the allowed failures even the right password is refused for now."""
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "3/m/ip,3/5m/key"}
    staff_make(role="marketer", email="throttle@riverside-health.example", with_totp=True)
    form = {"login": "throttle@riverside-health.example"}

    for _ in range(3):
        assert client.post(reverse("account_login"), form | {"password": "wrong password"}).status_code == 200
    response = client.post(reverse("account_login"), form | {"password": PASSWORD})

    assert response.status_code in (200, 429)
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="account.sign_in_failed").count() == 3


def test_r_sec_unique_id_an_unverified_email_cannot_sign_in(client):
    """R-SEC-UNIQUE-ID: staff sign in with their own verified address; an unverified one gets no session."""
    from allauth.account.models import EmailAddress

    user = staff_make(role="marketer", email="new@riverside-health.example", with_totp=True)
    EmailAddress.objects.filter(user=user).update(verified=False)

    response = client.post(
        reverse("account_login"), {"login": "new@riverside-health.example", "password": PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert "_auth_user_id" not in client.session
