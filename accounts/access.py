"""Deny by default. Every URL needs a signed-in staff member who passed the second factor, unless its URL
declaration opts out with one of these markers, so that each exception is visible in a urls.py.

    path("unsubscribe/<str:token>/", public(views.unsubscribe), name="unsubscribe")
"""
import functools

from django.urls import URLPattern, URLResolver

PUBLIC = "public"  # anyone: one-click unsubscribe, webhooks, sign-in pages
PATIENT = "patient"  # patient pages: no staff account; the consent app checks the patient's emailed code
INTEGRATION = "integration"  # the integration API: an API key, checked by the api app (never a session)
SIGNED_IN = "signed-in"  # any signed-in user before the second factor: enrolling or entering it
STAFF = "staff"  # the default: a staff member verified with a second factor


def access_level(view) -> str:
    return getattr(view, "hipaamail_access", STAFF)


def _marked(view, level: str):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        return view(*args, **kwargs)

    wrapper.hipaamail_access = level
    return wrapper


def public(view):
    return _marked(view, PUBLIC)


def signed_in(view):
    return _marked(view, SIGNED_IN)


def patient_pages(patterns) -> list:
    """Mark every pattern of a patient-facing URL list: the staff check does not apply to them."""
    return _mark_patterns(patterns, level=PATIENT, names=None)


def integration_patterns(patterns) -> list:
    """Mark every pattern of the integration API: no session; each operation checks its API key and scope."""
    return _mark_patterns(patterns, level=INTEGRATION, names=None)


def public_patterns(patterns, *, names: set[str]) -> list:
    """Mark the named URL patterns of an included list public; the others keep the default."""
    return _mark_patterns(patterns, level=PUBLIC, names=names)


def _mark_patterns(patterns, *, level: str, names: set[str] | None) -> list:
    marked = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            pattern = URLResolver(
                pattern.pattern,
                _mark_patterns(pattern.url_patterns, level=level, names=names),
                pattern.default_kwargs,
                pattern.app_name,
                pattern.namespace,
            )
        elif isinstance(pattern, URLPattern) and (names is None or pattern.name in names):
            pattern = URLPattern(pattern.pattern, _marked(pattern.callback, level), pattern.default_args, pattern.name)
        marked.append(pattern)
    return marked
