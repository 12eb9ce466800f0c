"""Headers, caching and methods on every URL of the product (issue 16, item 2).

R-NO-PHI-LEAK: no response is kept by a browser or a shared cache (`Cache-Control: no-store`,
hipaamail.middleware.NoStoreMiddleware). RFC 9110 9.1: HEAD is answered wherever GET is, with GET's status and no
body; RFC 9110 15.5.6: a method a view does not serve answers 405 with an `Allow` header.

The URLs are not listed by hand: every pattern of the resolver is walked (django.urls.get_resolver), its
parameters are filled from one world of real objects made through the services and factories, and each URL is
requested by a client of the kind that may see it (a verified administrator for staff pages, a patient who typed
their emailed code for the portal, an API key for the integration API, nobody for public pages). A pattern added
tomorrow is walked too; one whose parameters this file cannot fill fails `test_every_url_pattern_is_walked`."""
import re
from dataclasses import dataclass

import pytest
from django.core import mail
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern

from accounts.access import INTEGRATION, PATIENT, PUBLIC, SIGNED_IN, STAFF, access_level, public
from accounts.tests.factories import staff_make
from api.keys import api_key_create
from api.models import WebhookDelivery
from api.scopes import SCOPES
from api.webhooks import webhook_subscription_create
from campaigns.models import Delivery
from campaigns.sending.messages import unsubscribe_token
from campaigns.sending.tracking import link_token, tracking_token
from campaigns.services.launch import campaign_launch
from campaigns.services.segments import segment_save
from campaigns.tests.factories import block_make, campaign_approved_make, template_make
from conftest import totp_code
from consent import documents
from consent.models import Invitation
from consent.patient_import.validate import COLUMNS
from consent.services import imports, signing
from consent.tests.factories import form_published_make, patient_make, purpose_make
from hipaamail.middleware import NoStoreMiddleware
from journeys.tests.factories import journey_live_make, journey_purpose_make

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


@dataclass(frozen=True)
class Target:
    route: str  # the pattern as declared, e.g. "consent/patients/<int:patient_id>/"
    name: str  # namespaced URL name, or the route when the pattern has none
    level: str  # accounts.access level: who may see it
    url: str


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}:{pattern.namespace}" if namespace and pattern.namespace else (
                pattern.namespace or namespace
            )
            yield from _walk(pattern.url_patterns, prefix + _route(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield prefix + _route(pattern.pattern), name, pattern


def _route(pattern) -> str:
    text = str(pattern)
    if isinstance(pattern, RoutePattern):
        return text
    return text.removeprefix("^").removesuffix("$")


@pytest.fixture
def world(verified_client):
    """One of every object a URL names, made through the real services and factories; and a client for each kind
    of visitor."""
    officer = staff_make(role="compliance officer", with_totp=True)
    administrator = staff_make(role="administrator", with_totp=True)
    administrator.is_superuser = True  # the Django admin's pages need it; the role alone opens the product's
    administrator.save(update_fields=["is_superuser"])
    key = api_key_create(actor=administrator, name="EHR nightly sync", scopes=list(SCOPES))
    subscription = webhook_subscription_create(
        actor=administrator, api_key_id=key.key.pk, url="https://crm.example.org/hooks/hipaamail",
        event_types=["authorization.signed"],
    ).subscription

    purpose = purpose_make()
    form = form_published_make(purpose)
    patient = patient_make(postal_code="62701")
    text = documents.form_text(form)
    authorization = signing.authorization_sign(  # the portal's path: the PDF copy is rendered and stored
        patient_id=patient.pk, form_id=form.pk, shown_text_hash=documents.text_hash(text),
        signature_name=patient.full_name, intent_confirmed=True, signed_by_representative=False,
        representative_authority="", signed_ip="203.0.113.7", user_agent="pytest", invitation_id=None,
    )
    _, invitation_token = signing.invitation_create(
        actor=officer, patient_id=patient_make().pk, purpose_id=purpose.pk, channel=Invitation.Channel.QR
    )
    template, block = template_make(officer=officer), block_make(officer=officer)
    campaign = campaign_approved_make(purpose=purpose, template=template, blocks=[block])
    campaign_launch(actor=None, campaign_id=campaign.pk)
    delivery = Delivery.objects.filter(campaign=campaign).order_by("pk").first()
    segment = segment_save(
        actor=officer, name="Springfield", rules={"op": "and", "rules": [{"field": "postal_code", "prefix": "627"}]}
    )
    patient_import = imports.patient_import_upload(actor=officer, content=f"{','.join(COLUMNS)}\n".encode())
    journey = journey_live_make(purpose=journey_purpose_make())

    verified_client.sign_in(user=administrator)
    patient_client = Client()
    patient_client.post("/my/sign-in/", {"email": patient.email})
    code = re.search(r"Your code is: (\d{6})", mail.outbox[-1].body).group(1)
    assert patient_client.post("/my/code/", {"code": code}).status_code == 302
    api_client = Client(headers={"Authorization": f"Bearer {key.token}"})

    values = {
        "campaign_id": campaign.pk,
        "segment_id": segment.pk,
        "purpose_id": purpose.pk,
        "form_id": form.pk,
        "patient_id": patient.pk,
        "authorization_id": authorization.pk,
        "import_id": patient_import.pk,
        "journey_id": journey.pk,
        "key_id": key.key.pk,
        "subscription_id": subscription.pk,
        "delivery_id": delivery.pk,
        "version": "r5",
        "uidb36": "1",
        "key": "not-a-real-key",
        "app_label": "consent",
        "url": "nothing-here/",
        "content_type_id": "1",
        "id": str(administrator.pk),
        "pk": "1",
        "object_id": str(administrator.pk),
        "action": "approve",
    }
    # Parameters whose value depends on the URL they are in.
    by_name = {
        "content_item_action": {"kind": "block", "item_id": block.pk},
        "content_template_edit": {"item_id": template.pk},
        "content_block_edit": {"item_id": block.pk},
        "consent:patient_document": {"kind": "pdf"},
        "portal:invitation_open": {"token": invitation_token},
        "unsubscribe": {"token": unsubscribe_token(delivery.pk)},
        "tracking:open": {"token": tracking_token(delivery.pk)},
        "tracking:click": {
            "token": tracking_token(delivery.pk),
            "link": link_token(campaign_id=campaign.pk, url="https://riverside.example/cpap"),
        },
        "webhook_delivery_retry": {"delivery_id": _webhook_delivery_id(subscription)},
    }
    clients = {STAFF: verified_client, SIGNED_IN: verified_client, PATIENT: patient_client,
               INTEGRATION: api_client, PUBLIC: Client()}
    return {"values": values, "by_name": by_name, "clients": clients, "administrator": administrator,
            "officer": officer, "patient": patient, "authorization": authorization}


def _webhook_delivery_id(subscription) -> int:
    outgoing = WebhookDelivery.objects.filter(subscription=subscription).order_by("pk").first()
    assert outgoing is not None, "signing should have queued a webhook delivery for the subscription"
    return outgoing.pk


_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")


def _targets(world) -> tuple[list[Target], list[str]]:
    """Every URL pattern with its parameters filled, and the patterns that could not be filled."""
    targets, unfilled, seen = [], [], set()
    for route, name, pattern in _walk(get_resolver().url_patterns):
        short = (name or "").rsplit(":", 1)[-1]
        overrides = world["by_name"].get(name, world["by_name"].get(short, {}))

        def fill(match, overrides=overrides):
            parameter = match.group(1) or match.group(2)
            value = overrides.get(parameter, world["values"].get(parameter))
            if value is None:
                raise KeyError(parameter)
            return str(value)

        try:
            url = "/" + _PARAMETER.sub(fill, route)
        except KeyError as missing:
            unfilled.append(f"{route} (parameter {missing})")
            continue
        if url in seen:
            continue  # the API declares one path once per method (a GET and a POST operation): one URL, one view
        seen.add(url)
        if resolve(url).func is not pattern.callback:
            unfilled.append(f"{route} (filled as {url}, which resolves elsewhere)")
            continue
        targets.append(Target(route=route, name=name or route, level=access_level(pattern.callback), url=url))
    return targets, unfilled


def _ask(client, method: str, url: str):
    return client.generic(method, url)


def test_every_url_pattern_is_walked(world):
    """A new URL pattern cannot escape the checks below: its parameters must be fillable from the world."""
    targets, unfilled = _targets(world)

    assert unfilled == []
    levels = {target.level for target in targets}
    assert levels == {STAFF, SIGNED_IN, PATIENT, INTEGRATION, PUBLIC}
    assert len(targets) > 150


def test_r_no_phi_leak_every_response_says_no_store_and_head_answers_like_get(world):
    """R-NO-PHI-LEAK: every staff page, patient page, export, API answer and public page says `no-store`, whatever
    its status (a redirect to sign in and a 404 too). RFC 9110 9.1: wherever GET is served, HEAD gets the same
    status and the same Content-Type. The empty body is the server's part (gunicorn and runserver send none for
    HEAD, and the test client drops it the same way), so it is not asserted here: it could not fail."""
    targets, _ = _targets(world)
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
    targets, _ = _targets(world)
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
