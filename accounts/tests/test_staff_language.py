"""A staff member's language (issue 17, item 6; ADR 0030): the header's switch, kept for their account so that it
follows them to another device, the browser's language when they never chose, and the sign-in page switchable too."""
import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.language import staff_language
from accounts.models import StaffPreference
from accounts.tests.factories import PASSWORD, staff_make

pytestmark = pytest.mark.django_db


def _sign_in(client, user):
    client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    device.last_t = -1  # a second sign-in within the same 30 s: the code is not refused as already used
    device.save(update_fields=["last_t"])
    code = f"{totp(device.bin_key, device.step, device.t0, device.digits):06d}"
    response = client.post("/account/two-factor/", {"token": code}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    return response


def test_the_sign_in_page_switches_to_spanish_and_back():
    client = Client()
    page = client.get("/accounts/login/").content.decode()
    assert '<html lang="en">' in page and 'action="/account/language/"' in page and 'lang="es">Español' in page

    response = client.post("/account/language/", {"language": "es", "next": "/accounts/login/"})

    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    page = client.get("/accounts/login/").content.decode()
    assert '<html lang="es">' in page and "Ir al contenido" in page and 'lang="en">English' in page
    client.post("/account/language/", {"language": "en", "next": "/accounts/login/"})
    assert '<html lang="en">' in client.get("/accounts/login/").content.decode()


def test_a_staff_members_choice_is_kept_and_follows_them_to_another_device():
    user = staff_make(role="marketer", with_totp=True)
    laptop = Client()
    _sign_in(laptop, user)
    assert staff_language(user.pk) == "en"  # never chosen: the product's default for their mail

    laptop.post("/account/language/", {"language": "es", "next": "/"})

    assert StaffPreference.objects.get(user=user).language == "es"
    assert staff_language(user.pk) == "es"
    assert '<html lang="es">' in laptop.get("/").content.decode()
    # A new device: no cookie, a browser that asks for English; the stored choice wins once they have signed in.
    phone = Client(HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert '<html lang="en">' in phone.get("/accounts/login/").content.decode()
    page = _sign_in(phone, user).content.decode()
    assert '<html lang="es">' in page and "Campañas" in page


def test_without_a_choice_the_browsers_language_decides():
    user = staff_make(role="marketer", with_totp=True)
    client = Client(HTTP_ACCEPT_LANGUAGE="es-US,es;q=0.9,en;q=0.5")
    page = _sign_in(client, user).content.decode()
    assert '<html lang="es">' in page
    assert not StaffPreference.objects.filter(user=user).exists()


def test_an_unknown_language_changes_nothing():
    user = staff_make(role="marketer", with_totp=True)
    client = Client()
    _sign_in(client, user)

    response = client.post("/account/language/", {"language": "xx", "next": "/"})

    assert response.status_code == 302
    assert not StaffPreference.objects.filter(user=user).exists()
    assert '<html lang="en">' in client.get("/").content.decode()


def test_the_switch_goes_back_only_to_a_page_of_ours():
    response = Client().post("/account/language/", {"language": "es", "next": "https://evil.example/"})
    assert response.status_code == 302 and not response["Location"].startswith("https://evil.example")


def test_the_switch_is_a_post_with_csrf():
    client = Client(enforce_csrf_checks=True)
    assert client.get("/account/language/").status_code == 405
    assert client.post("/account/language/", {"language": "es"}).status_code == 403
