import re
import uuid

from django.conf import settings
from django.contrib.auth import logout
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from ninja.operation import PathView

from accounts.access import INTEGRATION, PATIENT, PUBLIC, SIGNED_IN, access_level
from accounts.roles import is_staff_member
from accounts.throttle import client_ip
from audit import context as audit_context
from audit.exceptions import NotFound
from observability import context as log_context

# A caller's own request id is kept when it looks like one (a proxy's, a client's), so that it is the same in both
# logs; anything else (spaces, newlines, quotes: a forged log line) gets an id of ours.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,36}")


class NoStoreMiddleware:
    """R-NO-PHI-LEAK: no response of ours is kept by a browser, a proxy or a shared cache. Staff pages, patient pages,
    the FHIR export JSON, the report exports (CSV, PDF), the TOTP set-up page (its secret), the recovery codes, the
    API: every response that passes through Django's middleware gets `Cache-Control: no-store` (RFC 9111 5.2.2.5),
    redirects and error pages included, so a new view cannot forget it. A view's own header is kept only when it
    already says no-store (e.g. never_cache's, or the portal PDF's "private, no-store"); anything else (a max-age, a
    "public") is replaced, because a view that asks to be cached is a mistake here, not an exception.

    Exempt, on purpose: the static files (CSS, scripts, images). In production whitenoise serves them from a
    middleware placed before this one (hipaamail/settings/production.py) and answers before this runs, so they keep
    their long, immutable cache (their names carry a content hash); in the demo runserver's static handler serves
    them outside the middleware. They carry no PHI. Nothing else PHI-free needs caching: the health probes and
    /metrics must not be cached anyway."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        directives = {d.strip().split("=")[0].lower() for d in response.get("Cache-Control", "").split(",")}
        if "no-store" not in directives:
            response["Cache-Control"] = "no-store"
        return response


class RequestIdMiddleware:
    """Bind a request id and the client address for the audit trail of this request, and the request id for every
    line it logs (observability.context)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get("X-Request-ID", "")
        request.request_id = given if _REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
        with (
            audit_context.bound(ip=client_ip(request) or None, request_id=request.request_id),
            log_context.request_bound(request_id=request.request_id),
        ):
            response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


class StaffSessionLifetimeMiddleware:
    """R-SEC-AUTOLOGOFF: idle sessions end through SESSION_COOKIE_AGE (renewed on each request); this ends
    any signed-in session at an absolute lifetime after sign-in, however active it is."""

    SESSION_KEY = "hipaamail_signed_in_at"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            started = request.session.get(self.SESSION_KEY)
            now = timezone.now().timestamp()
            if started is None:
                request.session[self.SESSION_KEY] = now
            elif now - started > settings.STAFF_SESSION_ABSOLUTE_LIFETIME.total_seconds():
                logout(request)
                return redirect(f"{reverse('account_login')}?next={request.path}")
        return self.get_response(request)


class DenyByDefaultMiddleware:
    """Every view needs a verified staff member unless its URL declaration opted out (accounts.access)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        level = access_level(view_func)
        if level in (PUBLIC, PATIENT, INTEGRATION):
            return None
        user = request.user
        if not user.is_authenticated:
            return redirect(f"{reverse('account_login')}?next={request.get_full_path()}")
        if level == SIGNED_IN:
            return None
        if not is_staff_member(user):
            # The same answer as a page that does not exist: nothing to learn here.
            raise Http404
        if not user.is_verified():
            return redirect(f"{reverse('otp_verify')}?next={request.get_full_path()}")
        return None


# The methods a web page may be asked for; the integration API serves GET and POST only too. PUT, PATCH, DELETE,
# OPTIONS, TRACE and anything else answer 405 (MethodNotAllowedMiddleware), before any view runs: Django's FormView
# treats PUT as POST and its RedirectView PUT, PATCH and DELETE as GET (allauth's pages and the admin's redirects),
# and the admin's function views answer any method like GET. OPTIONS is refused too: View.options() would advertise
# the handlers refused here (FormView's put). Every view of ours also declares what it serves (require_safe,
# require_http_methods([...]), require_POST), with HEAD wherever GET is (RFC 9110 9.1);
# hipaamail/tests/test_headers_and_methods.py walks every URL to keep it so.
WEB_METHODS = ("GET", "HEAD", "POST")
# What a view that declares nothing is taken to serve (the admin's and allauth's function views: forms).
UNDECLARED_VIEW_METHODS = WEB_METHODS


def _api_path_view(view) -> PathView | None:
    """The django-ninja PathView behind an integration API operation's view function (a closure over it, under
    the access marker's wrapper)."""
    while view is not None:
        code, closure = getattr(view, "__code__", None), getattr(view, "__closure__", None) or ()
        cell = dict(zip(code.co_freevars, closure, strict=True)).get("self") if code is not None else None
        if cell is not None and isinstance(cell.cell_contents, PathView):
            return cell.cell_contents
        view = getattr(view, "__wrapped__", None)
    return None


def view_allowed_methods(view) -> tuple[str, ...] | None:
    """The methods a view serves, for the Allow header; None for an integration API operation, which answers 405
    itself from its declared operations (django-ninja's PathView)."""
    if _api_path_view(view) is not None:
        return None
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        handlers = {m.upper() for m in view_class.http_method_names if hasattr(view_class, m)}
        if "GET" in handlers:
            handlers.add("HEAD")  # View.setup() serves HEAD with get() when the class has no head()
        return tuple(m for m in WEB_METHODS if m in handlers)
    while view is not None:
        code, closure = getattr(view, "__code__", None), getattr(view, "__closure__", None) or ()
        cells = dict(zip(code.co_freevars, closure, strict=True)) if code is not None else {}
        if "request_method_list" in cells:  # django.views.decorators.http.require_http_methods and its shorthands
            return tuple(cells["request_method_list"].cell_contents)
        view = getattr(view, "__wrapped__", None)
    return UNDECLARED_VIEW_METHODS


class MethodNotAllowedMiddleware:
    """405 with Allow, before the view runs, for a method the view does not serve (see WEB_METHODS): what a view
    declares, else GET, HEAD and POST. A view that declares its methods would answer the same 405 itself; this makes
    sure the views that do not (third-party ones, or one that forgot) never run for a method they do not expect."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method == "HEAD" and (answer := self._api_head(request, view_func, view_args, view_kwargs)):
            return answer
        allowed = view_allowed_methods(view_func)
        if allowed is None or request.method in allowed:
            return None
        return HttpResponseNotAllowed(allowed)

    @staticmethod
    def _api_head(request, view_func, view_args, view_kwargs):
        """RFC 9110 9.1 for the integration API: django-ninja matches HEAD to no operation (405), so a HEAD to a
        path with a GET operation is answered by that operation, as GET (same status, same headers; the server
        sends no body for HEAD). The API's middleware audits the call as the HEAD it was."""
        path_view = _api_path_view(view_func)
        if path_view is None or not any("GET" in op.methods for op in path_view.operations):
            return None
        if any("HEAD" in op.methods for op in path_view.operations):
            return None
        request.method = "GET"
        try:
            return view_func(request, *view_args, **view_kwargs)
        finally:
            request.method = "HEAD"


class NotFoundMiddleware:
    """Domain modules say "not found or not yours" with audit.exceptions.NotFound (they know nothing of HTTP); here,
    the one place, it becomes Django's 404, the same page as a URL that does not exist."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, NotFound):
            raise Http404 from exception
        return None


class ContentSecurityPolicyMiddleware:
    """Defence in depth against script injection on pages that show patient data: every HTML response carries
    settings.HIPAAMAIL_CONTENT_SECURITY_POLICY unless the view set its own. Pages keep no inline script (their
    scripts are files in static/js/ configured through data- attributes), so the policy allows scripts from this
    origin only; hipaamail/tests/test_csp.py fails when a template brings an inline script or handler back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = settings.HIPAAMAIL_CONTENT_SECURITY_POLICY
        if (
            policy
            and "Content-Security-Policy" not in response
            and response.get("Content-Type", "").startswith("text/html")
        ):
            response["Content-Security-Policy"] = policy
        return response
