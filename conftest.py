import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.db import connection
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from hipaamail.tests.factories import PASSWORD, staff_make

requires_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL; make test does)"
)


@pytest.fixture
def verified_client(client):
    """A test client signed in as a staff member of the given role who passed the second factor."""

    def sign_in(role: str = "marketer", user=None):
        user = user or staff_make(role=role, with_totp=True)
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
            user=user, name="Authenticator app", confirmed=True
        )
        client.force_login(user)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
        return user

    client.sign_in = sign_in
    return client


# --- In Chromium (tests marked `browser`) ------------------------------------------------------------------
# One set-up for every app's browser tests. It lives here, outside the linted packages, so that consent's tests
# can use it without importing hipaamail.tests.test_browser (which imports campaigns: the layers contract).

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser_context_args() -> dict:
    """Options for the browser context; a test module overrides this fixture for another viewport etc."""
    return {"viewport": {"width": 1280, "height": 860}}


@pytest.fixture
def browser_context(browser_context_args):
    """A Playwright browser context in Debian's Chromium, closed after the test."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test-browser installs it)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes between
    # browser steps are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_context(**browser_context_args)
        browser.close()


@pytest.fixture
def page(browser_context):
    return browser_context.new_page()


def totp_code(user) -> str:
    """The current TOTP code of the user's confirmed device, with its throttle and last-used step reset, so a
    test can enter a code again within the same 30 seconds (a person would wait for the next code)."""
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.last_t = -1
    device.save()
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def screenshot(page, name: str) -> None:
    """A full-page screenshot to $SCREENSHOT_DIR/<name>.png, when SCREENSHOT_DIR is set."""
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def browser_sign_in(page, live_server, user, *, start: str = "/", screenshots: bool = False) -> None:
    """Sign a staff member in as a person would: password, then the code from their confirmed TOTP device.

    `start` is the first page opened (it must send an anonymous visitor to the sign-in page); with
    `screenshots`, the sign-in and two-factor pages are captured (sign-in-<role>, two-factor-code)."""
    page.goto(f"{live_server.url}{start}")
    assert "/accounts/login/" in page.url
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    if screenshots:
        screenshot(page, f"sign-in-{user.groups.first().name.replace(' ', '-')}")
    page.click("main button[type=submit]")
    page.wait_for_url("**/account/two-factor/**")
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    page.fill("input[name=token]", f"{totp(device.bin_key, device.step, device.t0, device.digits):06d}")
    if screenshots:
        screenshot(page, "two-factor-code")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


# --- axe-core: accessibility checks of pages in Chromium --------------------------------------------------
# axe-core comes from the npm registry, never from this repository: /tmp/axe (or $AXE_CORE_JS), installed there
# with `npm install --prefix /tmp/axe axe-core` when missing; the tests that need it skip when npm is missing.
AXE_PREFIX = Path("/tmp/axe")
SERIOUS = {"serious", "critical"}


@pytest.fixture(scope="session")
def axe_js() -> Path:
    configured = os.environ.get("AXE_CORE_JS")
    if configured:
        return Path(configured)
    path = AXE_PREFIX / "node_modules" / "axe-core" / "axe.min.js"
    if not path.exists():
        if shutil.which("npm") is None:
            pytest.skip("axe-core is needed from the npm registry, and npm is not installed")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(AXE_PREFIX), "axe-core"],
            check=True, capture_output=True, timeout=300,
        )
    return path


def assert_accessible(page, axe_js: Path) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    page.add_script_tag(path=str(axe_js))
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" "))}))"""
    )
    serious = [violation for violation in violations if violation["impact"] in SERIOUS]
    assert serious == [], f"axe-core on {page.url}: {serious}"
