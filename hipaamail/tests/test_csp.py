"""Content-Security-Policy on every page (hipaamail.middleware.ContentSecurityPolicyMiddleware).

Defence in depth against script injection on pages that show patient data: scripts run only from this origin's
static files, so templates keep no inline script, no on...= handler and no javascript: URL. No rule of RULES.md
asks for this by name (it is security posture, next to the 164.312 safeguards), so no rule id is claimed here.
The browser suite runs every page it opens under the policy and fails on any violation (conftest.py).
"""
import re
from pathlib import Path

import pytest
from django.conf import settings

from accounts.tests.factories import staff_make
from conftest import browser_sign_in

POLICY = settings.HIPAAMAIL_CONTENT_SECURITY_POLICY
TEMPLATES = Path(settings.BASE_DIR) / "templates"

SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
JAVASCRIPT_URL = re.compile(r"javascript:", re.IGNORECASE)


def _directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def test_the_policy_allows_scripts_from_this_origin_only():
    directives = _directives(POLICY)

    assert directives["script-src"] == ["'self'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in POLICY


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "path", "status"),
    [
        ("staff page", "/", 200),
        ("patient portal page", "/my/sign-in/", 200),
        ("unsubscribe page", "/unsubscribe/forged-token/", 404),
        ("admin login (sent on to the staff sign-in)", "/admin/login/", 302),
        ("page that does not exist", "/no-such-page/", 404),
        ("staff sign-in page", "/accounts/login/", 200),
    ],
)
def test_every_kind_of_page_carries_the_policy(verified_client, kind, path, status):
    if kind == "staff page":
        verified_client.sign_in(role="marketer")

    response = verified_client.get(path)

    assert response.status_code == status, kind
    assert response["Content-Type"].startswith("text/html"), kind
    assert response["Content-Security-Policy"] == POLICY, kind


@pytest.mark.django_db
def test_the_admin_pages_carry_the_policy_and_load_their_scripts_as_files(verified_client):
    """Django's admin keeps its scripts in static files: under the policy they still load."""
    user = verified_client.sign_in(role="administrator")
    user.is_superuser = True
    user.save(update_fields=["is_superuser"])

    for path in ["/admin/", "/admin/auth/user/", f"/admin/auth/user/{user.pk}/change/"]:
        response = verified_client.get(path)
        html = response.content.decode()
        assert response.status_code == 200, path
        assert response["Content-Security-Policy"] == POLICY, path
        scripts = SCRIPT_TAG.findall(html)
        assert scripts, path
        for tag in scripts:
            assert re.search(r'\ssrc="/[^/]', tag), (path, tag)  # a file from this origin (static, or jsi18n)


def test_the_middleware_keeps_a_policy_the_view_set_and_skips_non_html(rf):
    from django.http import HttpResponse, JsonResponse

    from hipaamail.middleware import ContentSecurityPolicyMiddleware

    def own_policy(request):
        response = HttpResponse("<p>x</p>")
        response["Content-Security-Policy"] = "default-src 'none'"
        return response

    assert ContentSecurityPolicyMiddleware(own_policy)(rf.get("/"))["Content-Security-Policy"] == "default-src 'none'"
    assert "Content-Security-Policy" not in ContentSecurityPolicyMiddleware(lambda request: JsonResponse({}))(rf.get("/"))
    html = ContentSecurityPolicyMiddleware(lambda request: HttpResponse("<p>x</p>"))(rf.get("/"))
    assert html["Content-Security-Policy"] == POLICY


def test_a_deployment_can_tighten_the_policy(rf, settings):
    from django.http import HttpResponse

    from hipaamail.middleware import ContentSecurityPolicyMiddleware

    settings.HIPAAMAIL_CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'"

    response = ContentSecurityPolicyMiddleware(lambda request: HttpResponse("<p>x</p>"))(rf.get("/"))

    assert response["Content-Security-Policy"] == "default-src 'none'; script-src 'self'"


def _template_offences(text: str) -> list[str]:
    offences = [tag for tag in SCRIPT_TAG.findall(text) if not re.search(r"\ssrc\s*=", tag, re.IGNORECASE)
                and not re.search(r"""type\s*=\s*["']application/(ld\+)?json["']""", tag, re.IGNORECASE)]
    offences += [match.group(0) for match in EVENT_HANDLER.finditer(text) if _inside_a_tag(text, match.start())]
    offences += [match.group(0) for match in JAVASCRIPT_URL.finditer(text)]
    return offences


def _inside_a_tag(text: str, index: int) -> bool:
    """Whether text[index] is within an HTML tag's attributes (not in the text between tags)."""
    return text.rfind("<", 0, index) > text.rfind(">", 0, index)


def test_the_scan_finds_inline_scripts_handlers_and_javascript_urls():
    """The template scan below cannot pass by finding nothing: it finds each kind of offence."""
    assert _template_offences('<script>alert(1)</script>') == ["<script>"]
    assert _template_offences('<script defer>x()</script>') == ["<script defer>"]
    assert _template_offences('<button type="button" onclick="x()">Go</button>') == [" onclick="]
    assert _template_offences('<body\n  onload="x()">') == [" onload="]
    assert _template_offences('<a href="javascript:x()">Go</a>') == ["javascript:"]
    assert _template_offences('<script src="{% static \'js/a.js\' %}" defer></script>') == []
    assert _template_offences('<p>Click on=this and once= more</p>') == []


def test_no_template_has_an_inline_script_an_event_handler_or_a_javascript_url():
    """Every template under templates/ (pages, emails, PDFs): a script is a file in static/js/ loaded with
    <script src=... defer>, its values in data- attributes; the policy would refuse anything inline."""
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert len(templates) > 50  # the scan reads the real templates folder

    offences = {str(path.relative_to(TEMPLATES)): found for path in templates if (found := _template_offences(
        path.read_text()))}

    assert offences == {}


def test_every_script_a_template_loads_is_a_file_in_static():
    static = Path(settings.BASE_DIR) / "static"
    loaded = set()
    for path in TEMPLATES.rglob("*.html"):
        loaded.update(re.findall(r"""<script\b[^>]*\ssrc="\{% static '([^']+)' %\}""", path.read_text()))

    assert {"js/import-progress.js", "js/campaign-progress.js", "js/campaign-editor.js", "js/segment-builder.js",
            "js/timezone-preselect.js"} <= loaded
    assert [name for name in sorted(loaded) if not (static / name).is_file()] == []


# --- In Chromium ----------------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_browser_suite_records_a_violation(browser_context, live_server):
    """The collector conftest.py puts on every browser context sees what the policy refuses, so a browser test on
    a page that breaks the policy fails (at teardown). Here the violation is made on purpose, then cleared."""
    page = browser_context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    assert page.evaluate("typeof window.__cspViolations") == "object"

    page.evaluate("""() => { const script = document.createElement("script");
                       script.textContent = "window.__injected = true"; document.body.append(script); }""")
    page.wait_for_function("window.__cspViolations.length > 0")

    assert page.evaluate("window.__injected === undefined")  # the policy refused it
    violations = browser_context.csp_violations
    page.evaluate("1")  # let the binding's report and the console message arrive
    assert any(violation.get("directive") == "script-src-elem" for violation in violations), violations
    assert any("Content Security Policy" in violation.get("console", "") for violation in violations), violations
    violations.clear()
    page.evaluate("window.__cspViolations.length = 0")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_admin_runs_its_own_scripts_under_the_policy(page, live_server):
    """Django's admin in Chromium under the policy: its scripts (static files) run, and nothing is refused (the
    page fixture fails the test at teardown on any violation)."""
    administrator = staff_make(role="administrator", with_totp=True)
    administrator.is_superuser = True
    administrator.save(update_fields=["is_superuser"])
    browser_sign_in(page, live_server, administrator)

    page.goto(f"{live_server.url}/admin/")
    assert page.evaluate("document.documentElement.dataset.theme") == "auto"  # admin/js/theme.js ran
    page.goto(f"{live_server.url}/admin/auth/user/")
    assert page.evaluate("typeof django === 'object' && typeof django.jQuery === 'function'")  # jquery.init.js
    page.locator("#action-toggle").check()  # admin/js/actions.js selects every row
    assert page.locator("input.action-select").first.is_checked()
    page.goto(f"{live_server.url}/admin/auth/user/{administrator.pk}/change/")
    assert page.locator("h1").inner_text() == "Change user"
