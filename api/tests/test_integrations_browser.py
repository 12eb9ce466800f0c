"""In Chromium, as an administrator and an integrator would: the API reference renders from our own static files
under the Content-Security-Policy; an administrator creates a key, copies it from the page it is shown on once,
and the key works. Marked `browser` (slow)."""
import re

import pytest

from accounts.tests.factories import staff_make
from api.models import ApiKey
from conftest import browser_sign_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_api_reference_renders_under_the_policy(page, live_server):
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{live_server.url}/api/v1/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("hipaamail integration API")
    assert page.locator(".opblock-summary-path", has_text="/api/v1/purposes").count() >= 1
    assert all(url.startswith(live_server.url) for url in requests), "the docs load nothing from another origin"
    screenshot(page, "api-reference")
    # The page's CSP-violation watch (conftest.browser_context) fails the test at teardown if Swagger UI needed
    # an inline script or a CDN.


def test_an_administrator_creates_a_key_and_sees_it_once(page, live_server):
    admin = staff_make(role="administrator", email="admin@demo.hipaamail.test", with_totp=True)
    browser_sign_in(page, live_server, admin)
    page.get_by_role("link", name="Integrations").click()
    page.get_by_role("link", name="Create an API key").click()
    page.fill("input[name=name]", "Epic nightly sync")
    page.fill("input[name=source]", "epic")
    page.get_by_label(re.compile("patients:write")).check()
    page.get_by_label(re.compile("events:write")).check()
    page.get_by_role("button", name="Create the key").click()
    token = page.locator("#token").input_value()
    assert re.fullmatch(r"hm_[0-9a-f]{8}_[A-Za-z0-9_\-]{43}", token)
    screenshot(page, "api-key-created")
    page.get_by_role("link", name="Done").click()
    row = page.locator("tr", has_text="Epic nightly sync")
    assert row.locator(".badge", has_text="Active").is_visible()
    assert token not in page.content()
    screenshot(page, "api-keys")
    key = ApiKey.objects.get()
    assert key.scopes == ["events:write", "patients:write"]
