import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import PASSWORD, staff_make

requires_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL; make test does)"
)
# The suites that need a real broker (a worker process, the shared send-rate limit, the queue checks).
requires_redis = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis://"), reason="needs Redis (set CELERY_BROKER_URL)"
)


def pdf_text(content: bytes) -> str:
    """The text of a PDF in reading order (pdfminer.six: pure Python, so every machine reads the PDFs back, as
    poppler's pdftotext did; the tests compare words, not layout)."""
    import io

    from pdfminer.high_level import extract_text

    return extract_text(io.BytesIO(content))


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
        context = browser.new_context(**browser_context_args)
        violations = csp_violations_watch(context)
        yield context
        csp_violations_collect(context, violations)
        browser.close()
    assert violations == [], f"Content-Security-Policy violations: {violations}"


@pytest.fixture
def page(browser_context):
    """A page of the context; the test fails at teardown if any page of the context broke the
    Content-Security-Policy (browser_context watches every page, also those a test opens itself)."""
    return browser_context.new_page()


# --- Content-Security-Policy violations (hipaamail.middleware.ContentSecurityPolicyMiddleware) ------------
# Every page the browser suite opens runs under the policy, so a page that needs an inline script, an inline
# handler or a resource the policy refuses breaks a test. Two witnesses: the browser's console message for each
# refusal ("... violates the following Content Security Policy directive ..."), and the
# securitypolicyviolation events an init script records on window (and reports at once, so that none is lost
# when the page navigates away).
CSP_VIOLATION_RECORDER = """
(() => {
  window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (event) => {
    const violation = {directive: event.effectiveDirective, blocked: event.blockedURI, source: event.sourceFile,
                       line: event.lineNumber, page: document.location.href};
    window.__cspViolations.push(violation);
    if (typeof window.__hipaamailCspViolation === "function") { window.__hipaamailCspViolation(violation); }
  });
})();
"""


def csp_violations_watch(context) -> list:
    """Start recording the context's CSP violations; returns the list they are appended to."""
    violations: list = []
    context.csp_violations = violations  # for the test that proves the collector sees a violation
    context.expose_binding("__hipaamailCspViolation", lambda source, violation: violations.append(violation))
    context.add_init_script(CSP_VIOLATION_RECORDER)

    def console(message):
        if "Content Security Policy" in message.text:
            violations.append({"console": message.text, "page": message.page.url if message.page else None})

    context.on("console", console)
    context.on("page", csp_safe_wait_for_function)
    new_page = context.new_page

    def new_page_under_the_policy(*args, **kwargs):
        return csp_safe_wait_for_function(new_page(*args, **kwargs))

    context.new_page = new_page_under_the_policy
    return violations


def csp_safe_wait_for_function(page):
    """Playwright's page.wait_for_function runs its expression through eval() inside the page, which the policy
    refuses on purpose (no 'unsafe-eval'), so on these pages it would fail and count as a violation. The same call,
    polled with page.evaluate instead: that goes through the DevTools protocol, which the policy does not govern."""
    from playwright.sync_api import Error, TimeoutError

    def wait_for_function(expression, *, arg=None, timeout=None, polling=None):
        seconds = (30_000 if timeout is None else timeout) / 1000
        interval = polling if isinstance(polling, (int, float)) else 50
        deadline = time.monotonic() + seconds
        while True:
            try:
                result = page.evaluate(expression, arg)
            except Error as error:  # the page navigated (a reload) while it was asked: ask the new document
                if "context was destroyed" not in str(error) and "navigat" not in str(error):
                    raise
                result = None
            if result:
                return result
            if timeout != 0 and time.monotonic() > deadline:
                raise TimeoutError(f"wait_for_function: {expression!r} still false after {seconds:g} s")
            page.wait_for_timeout(interval)

    page.wait_for_function = wait_for_function
    return page


def csp_violations_collect(context, violations: list) -> None:
    """Add what the open pages recorded on window and had not reported yet."""
    from playwright.sync_api import Error

    for open_page in context.pages:
        try:
            recorded = open_page.evaluate("window.__cspViolations || []")
        except Error:  # a page in the middle of navigating or crashed: its console messages were already counted
            recorded = []
        violations.extend(violation for violation in recorded if violation not in violations)


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
# The pinned axe-core of hipaamail/tests/axe.py (npm registry, SHA-512 checked on every read); these two keep the
# browser tests' `assert_accessible(page, axe_js)` calls. A registry that cannot be reached fails, never skips.


@pytest.fixture(scope="session")
def axe_js() -> str:
    from hipaamail.tests.axe import axe_source

    return axe_source()


def assert_accessible(page, axe_js: str | None = None) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    from hipaamail.tests import axe

    axe.assert_accessible(page)
