"""Deny by default. Every URL needs a signed-in staff member who passed the second factor, unless its URL
declaration opts out with one of these markers, so that each exception is visible in a urls.py.

    path("unsubscribe/<str:token>/", public(views.unsubscribe), name="unsubscribe")
"""
import functools

from django.urls import URLPattern, URLResolver

PUBLIC = "public"  # anyone: patient pages, one-click unsubscribe, webhooks, sign-in pages
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


def public_patterns(patterns, *, names: set[str]) -> list:
    """Mark the named URL patterns of an included list public; the others keep the default."""
    marked = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            pattern = URLResolver(
                pattern.pattern,
                public_patterns(pattern.url_patterns, names=names),
                pattern.default_kwargs,
                pattern.app_name,
                pattern.namespace,
            )
        elif isinstance(pattern, URLPattern) and pattern.name in names:
            pattern = URLPattern(pattern.pattern, public(pattern.callback), pattern.default_args, pattern.name)
        marked.append(pattern)
    return marked
