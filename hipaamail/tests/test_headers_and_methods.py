"""Headers, caching and methods on every URL of the product (issue 16, item 2).

R-NO-PHI-LEAK: no response is kept by a browser or a shared cache (`Cache-Control: no-store`,
hipaamail.middleware.NoStoreMiddleware). RFC 9110 9.1: HEAD is answered wherever GET is, with GET's status and no
body; RFC 9110 15.5.6: a method a view does not serve answers 405 with an `Allow` header.

The URLs are not listed by hand: every pattern of the resolver is walked (django.urls.get_resolver), its
parameters are filled from one world of real objects made through the services and factories (both in
hipaamail/tests/url_walk.py, shared with the access matrix), and each URL is
requested by a client of the kind that may see it (a verified administrator for staff pages, a patient who typed
their emailed code for the portal, an API key for the integration API, nobody for public pages). A pattern added
tomorrow is walked too; one whose parameters url_walk cannot fill fails `test_every_url_pattern_is_walked`."""
import pytest
from django.test import Client, RequestFactory

from accounts.access import INTEGRATION, PATIENT, PUBLIC, SIGNED_IN, STAFF, public
from accounts.tests.factories import staff_make
from api.keys import api_key_create
from conftest import totp_code
from hipaamail.middleware import NoStoreMiddleware
from hipaamail.tests import url_walk

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_and_media")]

# Methods no page of ours serves (the API serves GET and POST only too); each must answer 405 with Allow.
UNSERVED = ("PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
# Where HEAD may not answer like GET, and why. Django's admin login redirects a signed-in user on GET only
# (django/contrib/admin/sites.py: `request.method == "GET" and self.has_permission(request)`); to HEAD it shows the
# form. Nothing of ours is here.
HEAD_UNLIKE_GET = {"admin:login"}


@pytest.fixture
def fresh_throttle_and_media(settings, tmp_path):
    """Signed copies in a per-test MEDIA_ROOT; an empty cache (the portal's code throttles live there)."""
    from django.core.cache import cache

    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def world():
    """The shared world (hipaamail/tests/url_walk.py) and a client for each kind of visitor: a verified
    administrator for staff pages, a patient who typed their emailed code for the portal, an API key with every
    scope for the integration API, nobody for public pages."""
    world = url_walk.world_make()
    staff = url_walk.staff_client(world["administrator"])
    world["clients"] = {STAFF: staff, SIGNED_IN: staff, PATIENT: url_walk.portal_client(world["patient"]),
                        INTEGRATION: url_walk.api_client(world["key"].token), PUBLIC: Client()}
    return world


def _ask(client, method: str, url: str):
    return client.generic(method, url)


def test_every_url_pattern_is_walked(world):
    """A new URL pattern cannot escape the checks below: its parameters must be fillable from the world."""
    targets, unfilled = url_walk.targets(world)

    assert unfilled == []
    levels = {target.level for target in targets}
    assert levels == {STAFF, SIGNED_IN, PATIENT, INTEGRATION, PUBLIC}
    assert len(targets) > 150


def test_r_no_phi_leak_every_response_says_no_store_and_head_answers_like_get(world):
    """R-NO-PHI-LEAK: every staff page, patient page, export, API answer and public page says `no-store`, whatever
    its status (a redirect to sign in and a 404 too). RFC 9110 9.1: wherever GET is served, HEAD gets the same
    status and the same Content-Type. The empty body is the server's part (gunicorn and runserver send none for
    HEAD, and the test client drops it the same way), so it is not asserted here: it could not fail."""
    targets, _ = url_walk.targets(world)
    failures = []
    get_served = 0
    for target in targets:
        client = world["clients"][target.level]
        got = _ask(client, "GET", target.url)
        if got.status_code == 500:
            failures.append(f"GET {target.url}: {got.status_code}")
        if "no-store" not in got.get("Cache-Control", ""):
            failures.append(f"GET {target.url} ({target.level}): Cache-Control {got.get('Cache-Control')!r}")
        if got.status_code == 405:
            continue
        get_served += 1
        if target.name in HEAD_UNLIKE_GET:
            continue
        head = _ask(client, "HEAD", target.url)
        if head.status_code != got.status_code:
            failures.append(f"HEAD {target.url} ({target.level}): {head.status_code}, GET gave {got.status_code}")
        if "no-store" not in head.get("Cache-Control", ""):
            failures.append(f"HEAD {target.url}: Cache-Control {head.get('Cache-Control')!r}")
        if head.get("Content-Type") != got.get("Content-Type"):
            types = f"{head.get('Content-Type')!r}, GET {got.get('Content-Type')!r}"
            failures.append(f"HEAD {target.url}: Content-Type {types}")

    assert not failures, "\n".join(failures)
    assert get_served > 100


def test_an_unserved_method_answers_405_with_allow_everywhere(world):
    """RFC 9110 15.5.6: PUT, PATCH, DELETE, OPTIONS and TRACE, which no view of ours serves, answer 405 with an
    Allow header that does not offer them, on every URL, for a visitor who may see the page (none is treated as
    GET or POST)."""
    targets, _ = url_walk.targets(world)
    failures = []
    for target in targets:
        client = world["clients"][target.level]
        for method in UNSERVED:
            response = _ask(client, method, target.url)
            allow = {m.strip() for m in response.get("Allow", "").split(",") if m.strip()}
            if response.status_code != 405 or not allow or method in allow:
                failures.append(f"{method} {target.url} ({target.level}): {response.status_code}, Allow {allow}")
            if "no-store" not in response.get("Cache-Control", ""):
                failures.append(f"{method} {target.url}: Cache-Control {response.get('Cache-Control')!r}")

    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("signed_in", [True, False])
def test_an_unserved_method_is_405_before_the_csrf_check_and_runs_no_view(world, signed_in):
    """With CSRF checks on, as a browser or curl meets them: a DELETE to a patient page or a staff page is a 405
    with Allow, not a CSRF refusal, and the view never runs (no audit row of a page view)."""
    from audit.models import AuditEvent

    client = Client(enforce_csrf_checks=True)
    if signed_in:
        client.cookies = world["clients"][STAFF].cookies
    before = AuditEvent.objects.count()
    patient_id = world["patient"].pk
    for url, allow in (
        (f"/consent/patients/{patient_id}/", "GET, HEAD"),
        ("/consent/patients/", "GET, HEAD, POST"),
        ("/my/", "GET, HEAD"),
        (f"/unsubscribe/{world['by_name']['unsubscribe']['token']}/", "GET, HEAD, POST"),
        ("/admin/", "GET, HEAD, POST"),
    ):
        response = client.delete(url)
        assert (response.status_code, response["Allow"]) == (405, allow), url
    assert AuditEvent.objects.count() == before


def test_r_no_phi_leak_the_pages_that_hold_secrets_and_phi_are_not_stored(world, client):
    """R-NO-PHI-LEAK: the pages the issue named, each with its content (not a redirect): the patient's portal home,
    the staff patient record, the FHIR export JSON, the PDF copy, the TOTP set-up page with its secret, the
    recovery codes."""
    staff, portal = world["clients"][STAFF], world["clients"][PATIENT]
    patient, authorization = world["patient"], world["authorization"]
    pages = {
        "portal home": portal.get("/my/"),
        "portal PDF": portal.get(f"/my/authorizations/{authorization.pk}/pdf/"),
        "patient record": staff.get(f"/consent/patients/{patient.pk}/"),
        "FHIR R5": staff.get(f"/consent/fhir/authorizations/{authorization.pk}/r5.json"),
        "FHIR R4": staff.get(f"/consent/fhir/authorizations/{authorization.pk}/r4.json"),
    }
    enrolling = staff_make(role="marketer")
    client.force_login(enrolling)
    pages["TOTP set-up"] = client.get("/account/two-factor/setup/")
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user=enrolling, confirmed=False)
    token = f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"
    confirmed = client.post("/account/two-factor/setup/", {"token": token})
    assert confirmed["Location"] == "/account/two-factor/recovery-codes/"
    pages["recovery codes"] = client.get("/account/two-factor/recovery-codes/")

    for page, response in pages.items():
        assert response.status_code == 200, page
        assert response["Cache-Control"] in ("no-store", "private, no-store"), page
    assert pages["FHIR R5"]["Content-Type"].startswith("application/fhir+json") or pages["FHIR R5"][
        "Content-Type"
    ].startswith("application/json")
    assert b"<svg" in pages["TOTP set-up"].content  # the QR code of the secret is on this page


@pytest.mark.parametrize("fmt", ["csv", "pdf"])
def test_r_no_phi_leak_report_exports_are_not_stored(world, fmt):
    """R-NO-PHI-LEAK: the compliance report exports (CSV streamed, PDF), after the second factor again."""
    from django.utils import timezone

    staff, administrator = world["clients"][STAFF], world["administrator"]
    today = timezone.localdate().isoformat()
    response = staff.post(
        "/reports/compliance-summary/",
        {"summary-format": fmt, "summary-code": totp_code(administrator), "summary-date_from": today,
         "summary-date_to": today},
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith({"csv": "text/csv", "pdf": "application/pdf"}[fmt])
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Disposition"].startswith("attachment;")


def _answer(cache_control: str | None):
    from django.http import HttpResponse

    def view(request):
        response = HttpResponse("<p>Test Patient 1</p>")
        if cache_control is not None:
            response["Cache-Control"] = cache_control
        return response

    return NoStoreMiddleware(view)(RequestFactory().get("/"))


NEVER_CACHE = "max-age=0, no-cache, no-store, must-revalidate, private"


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (None, "no-store"),
        ("public, max-age=3600", "no-store"),  # a view asking to be cached is overruled, not obeyed
        ("private, max-age=600", "no-store"),
        ("private, no-store", "private, no-store"),  # already no-store: the view's own words are kept
        (NEVER_CACHE, NEVER_CACHE),  # django.views.decorators.cache.never_cache's header
    ],
)
def test_r_no_phi_leak_no_view_can_ask_to_be_cached(given, sent):
    assert _answer(given)["Cache-Control"] == sent


def test_static_files_keep_their_cache_in_production(settings, tmp_path):
    """Static files carry no PHI and keep whitenoise's cache: production puts whitenoise before NoStoreMiddleware,
    so it answers them before the no-store rule runs; every other answer still says no-store."""
    from hipaamail.tests.test_settings import PRODUCTION_ENV, _manage

    shown = _manage(
        "shell", "-c", "from django.conf import settings; print('|'.join(settings.MIDDLEWARE))", env=PRODUCTION_ENV
    )
    assert shown.returncode == 0, shown.stderr
    production = shown.stdout.strip().splitlines()[-1].split("|")
    assert production.index("whitenoise.middleware.WhiteNoiseMiddleware") < production.index(
        "hipaamail.middleware.NoStoreMiddleware"
    )

    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "site.css").write_text("body { margin: 0 }")
    settings.STATIC_ROOT = tmp_path
    settings.MIDDLEWARE = production
    settings.WHITENOISE_AUTOREFRESH = False
    settings.SECURE_SSL_REDIRECT = False
    static = Client().get(f"{settings.STATIC_URL}css/site.css")
    page = Client().get("/health/live")

    assert static.status_code == 200
    assert "no-store" not in static["Cache-Control"] and "max-age=" in static["Cache-Control"]
    assert page["Cache-Control"].count("no-store") == 1


def test_r_sec_audit_a_head_to_the_api_is_answered_by_its_get_operation_and_audited_as_head(world):
    """RFC 9110 9.1 on the integration API (django-ninja alone answers HEAD with 405): the GET operation answers,
    the key's scope is checked the same, and the call is audited as the HEAD it was (R-SEC-AUDIT)."""
    from api.models import ApiKey
    from audit.models import AuditEvent

    api = world["clients"][INTEGRATION]
    got, head = api.get("/api/v1/purposes"), api.head("/api/v1/purposes")
    keyless = Client().head("/api/v1/purposes")
    narrow = api_key_create(actor=world["administrator"], name="Events only", scopes=["events:write"])
    refused = Client(headers={"Authorization": f"Bearer {narrow.token}"}).head("/api/v1/purposes")

    assert (got.status_code, head.status_code) == (200, 200)
    assert head["Content-Type"] == got["Content-Type"] == "application/json; charset=utf-8"
    assert (keyless.status_code, refused.status_code) == (401, 403)
    key = ApiKey.objects.exclude(pk=narrow.key.pk).get(name="EHR nightly sync")
    calls = [event.details for event in AuditEvent.objects.filter(action="api.called", object_id=str(key.pk))]
    assert [(call["method"], call["status"]) for call in calls][-2:] == [("GET", 200), ("HEAD", 200)]


def _view(methods=None):
    from django.views.decorators.http import require_http_methods

    def page(request):
        raise AssertionError("the view must not run")

    return require_http_methods(methods)(page) if methods else page


@pytest.mark.parametrize(
    ("view", "allowed"),
    [
        (_view(["GET", "HEAD", "POST"]), ("GET", "HEAD", "POST")),
        (_view(["POST"]), ("POST",)),
        (_view(), ("GET", "HEAD", "POST")),  # declares nothing: taken as a form page
        (public(_view(["GET", "HEAD"])), ("GET", "HEAD")),  # under the URL declaration's access marker
    ],
)
def test_the_method_check_reads_what_a_view_declares_through_its_wrappers(view, allowed):
    from django.views.generic import FormView, RedirectView

    from hipaamail.middleware import MethodNotAllowedMiddleware, view_allowed_methods

    assert view_allowed_methods(view) == allowed
    assert view_allowed_methods(FormView.as_view()) == ("GET", "HEAD", "POST")  # its put() is refused
    assert view_allowed_methods(RedirectView.as_view(url="/")) == ("GET", "HEAD", "POST")
    refused = MethodNotAllowedMiddleware(None).process_view(RequestFactory().put("/"), view, (), {})
    assert (refused.status_code, refused["Allow"]) == (405, ", ".join(allowed))
