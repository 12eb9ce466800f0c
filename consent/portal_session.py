"""The patient's session in the portal: which patient proved control of which email address, and when.

Patients are not Django users (ADR 0003). A patient is signed in to the portal when this session holds the id
of the patient whose address received the one-time code that was typed back (consent.services.portal). The
session ends after PORTAL_IDLE_SECONDS without a request; the check is made here, on the server, and the
session cookie is given the same idle age.
"""
import functools
import time

from django.shortcuts import redirect

PORTAL_IDLE_SECONDS = 30 * 60
_PATIENT = "portal_patient_id"
_SEEN = "portal_last_seen"
_NEXT = "portal_next"


def portal_patient_sign_in(request, *, patient_id: int) -> None:
    """The patient proved their address: bind the session to them under a new session key (no fixation)."""
    request.session.cycle_key()
    request.session[_PATIENT] = patient_id
    request.session[_SEEN] = time.time()
    request.session.set_expiry(PORTAL_IDLE_SECONDS)


def portal_patient_sign_out(request) -> None:
    for key in (_PATIENT, _SEEN, _NEXT):
        request.session.pop(key, None)


def portal_patient_id(request) -> int | None:
    """The id of the patient this session proved, or None (never proved, or idle too long)."""
    patient_id = request.session.get(_PATIENT)
    if patient_id is None:
        return None
    seen = request.session.get(_SEEN, 0)
    now = time.time()
    if now - seen > PORTAL_IDLE_SECONDS:
        portal_patient_sign_out(request)
        return None
    request.session[_SEEN] = now
    request.session.set_expiry(PORTAL_IDLE_SECONDS)
    return patient_id


def portal_next_set(request, url: str) -> None:
    """Where to go once the code is entered (a page of this portal, never an outside address)."""
    if url.startswith("/my/"):
        request.session[_NEXT] = url


def portal_next_pop(request, default: str) -> str:
    return request.session.pop(_NEXT, None) or default


def patient_required(view):
    """Portal views need a patient who proved their email address; others are sent to sign in.

    The view receives the proven patient's id as request.portal_patient_id."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        patient_id = portal_patient_id(request)
        if patient_id is None:
            portal_next_set(request, request.get_full_path())
            return redirect("portal:sign_in")
        request.portal_patient_id = patient_id
        return view(request, *args, **kwargs)

    return wrapper
