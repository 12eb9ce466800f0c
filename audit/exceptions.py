"""Exceptions every app may raise (audit is the floor of the house, so every app can import it)."""


class NotFound(Exception):
    """What a permission-checked fetch raises when the object is missing *or* the user may not see it: both get
    the same answer, so nothing is learnt by trying ids (R-MIN-NECESSARY). Domain modules raise this, never
    django.http.Http404; hipaamail.middleware.NotFoundMiddleware turns it into Django's ordinary 404 page."""
