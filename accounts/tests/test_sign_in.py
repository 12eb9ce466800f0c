"""Staff sign-in as a person meets it (issue 17): no sign-up anywhere (accounts are created by administrators,
R-SEC-UNIQUE-ID), the sign-up address answers with a page that says so instead of a loop through the sign-in page,
and "signed in" is said once the second factor is passed, not when the password was right (R-SEC-MFA)."""
import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import PASSWORD, staff_make

pytestmark = pytest.mark.django_db


def _messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_sign_in_page_offers_no_sign_up():
    page = Client().get("/accounts/login/").content.decode()

    assert "/accounts/signup/" not in page
    assert "sign up" not in page.lower()
    assert "Staff accounts are created by an administrator" in page


def test_r_sec_unique_id_the_sign_up_address_says_accounts_come_from_an_administrator():
    client = Client()

    response = client.get("/accounts/signup/")

    assert response.status_code == 200  # a page, not a redirect to the sign-in page (which led back here)
    page = response.content.decode()
    assert "Staff accounts are created by an administrator" in page
    assert 'href="/accounts/login/"' in page


def test_r_sec_unique_id_posting_to_sign_up_creates_no_account():
    from django.contrib.auth import get_user_model

    before = get_user_model().objects.count()
    response = Client().post(
        "/accounts/signup/", {"email": "new@riverside-health.example", "password1": "x" * 20, "password2": "x" * 20}
    )

    assert response.status_code == 200
    assert get_user_model().objects.count() == before


def test_r_sec_mfa_signed_in_is_said_after_the_second_factor_not_before():
    user = staff_make(role="marketer", with_totp=True)
    client = Client()

    after_password = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD}, follow=True)

    assert after_password.redirect_chain[-1][0].startswith("/account/two-factor/")
    assert not any("signed in" in message.lower() for message in _messages(after_password))
    assert "Successfully signed in" not in after_password.content.decode()

    device = TOTPDevice.objects.get(user=user, confirmed=True)
    after_code = client.post(
        "/account/two-factor/", {"token": f"{totp(device.bin_key, device.step, device.t0, device.digits):06d}"},
        follow=True,
    )

    assert after_code.redirect_chain[-1][0] == "/"
    assert f"Signed in as {user.email}." in after_code.content.decode()
    assert "Successfully signed in" not in after_code.content.decode()


def test_a_password_reset_for_an_unknown_address_offers_no_sign_up(mailoutbox):
    response = Client().post("/accounts/password/reset/", {"email": "nobody@riverside-health.example"})

    assert response.status_code == 302
    (message,) = mailoutbox
    assert "There is no staff account with this address." in message.body
    assert "signup" not in message.body and "sign up for an account" not in message.body
