"""Error pages people read (issue 17, item 7): in the house style, the same with DEBUG off in the demo as in
production, saying what happened in plain words; "missing" and "not yours" read the same (R-MIN-NECESSARY)."""
import pytest
from django.test import Client, override_settings
from django.urls import path

from accounts.access import public
from hipaamail import urls as root_urls
from hipaamail.settings.local import MIDDLEWARE as DEMO_MIDDLEWARE

pytestmark = pytest.mark.django_db


def _boom(request):
    raise RuntimeError("a bug")


urlpatterns = [path("boom/", public(_boom)), *root_urls.urlpatterns]
handler500 = root_urls.handler500


def test_r_min_necessary_a_forbidden_page_shows_the_404_page_not_debug(verified_client, settings):
    settings.DEBUG = False
    verified_client.sign_in(role="marketer")

    forbidden = verified_client.get("/audit/")
    missing = verified_client.get("/no/such/page/")

    assert forbidden.status_code == missing.status_code == 404
    assert forbidden.content == missing.content
    page = forbidden.content.decode()
    assert "We could not find that page" in page
    assert 'class="topbar"' in page and "Using the URLconf" not in page


def test_the_csrf_refusal_is_a_page_that_says_what_to_do(settings):
    settings.DEBUG = False
    client = Client(enforce_csrf_checks=True)

    response = client.post("/accounts/login/", {"login": "a@b.example", "password": "x"})

    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()


def test_a_405_gets_its_page_for_a_browser_and_keeps_allow(verified_client):
    verified_client.sign_in(role="compliance officer")
    with override_settings(MIDDLEWARE=DEMO_MIDDLEWARE):
        browser = verified_client.get("/audit/verify/", headers={"Accept": "text/html"})
        script = verified_client.get("/audit/verify/", headers={"Accept": "application/json"})

    assert (browser.status_code, browser["Allow"]) == (405, "POST")
    assert "This page cannot be used that way" in browser.content.decode()
    assert browser["Content-Length"] == str(len(browser.content))
    assert (script.status_code, script.content) == (405, b"")


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_a_server_error_shows_the_500_page():
    client = Client(raise_request_exception=False)

    response = client.get("/boom/")

    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on our side" in page
    assert "a bug" not in page and "Traceback" not in page


def test_the_favicon_is_served_at_favicon_ico(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"].endswith("/favicon.ico") and response["Location"].startswith("/static/")


def test_every_page_links_the_svg_and_png_icons(client):
    page = client.get("/accounts/login/").content.decode()

    assert 'rel="icon" href="/static/favicon.svg" type="image/svg+xml"' in page
    assert 'rel="icon" href="/static/favicon.png" type="image/png"' in page
