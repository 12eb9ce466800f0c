"""R-SEC-MFA step-up: the second factor asked again before approving, sending now, scheduling or cancelling a
campaign and before exporting a report. One check for all of them (campaigns.views.review, campaigns.views.reports).

It accepts either a current code from one of the user's own django-otp devices (TOTP or a recovery code; the
devices throttle repeated failures), or a passkey step-up: hipaamail's step-up endpoint verifies a WebAuthn
assertion of one of the user's own passkeys and calls `passkey_stepup_grant`, which keeps a random nonce in the
session and hands it to the page; the form sends it back in its hidden `passkey_stepup` field. A grant is good
for one action, for the user it was granted to, for PASSKEY_STEPUP_MAX_AGE_SECONDS. This module holds no WebAuthn
code: hipaamail (which may import campaigns, not the reverse) does the ceremony.
"""
import hmac
import secrets
import time

from django.core.cache import cache
from django_otp import match_token

from audit import actions
from audit.services import audit_record

PASSKEY_STEPUP_SESSION_KEY = "reentry_passkey_stepup"
PASSKEY_STEPUP_MAX_AGE_SECONDS = 120
# Marks a nonce as spent in the cache too: two requests carrying the same session at once each read the grant
# before either saves the session without it; cache.add (SET NX on Redis) lets only one of them spend it.
_SPENT_CACHE_PREFIX = "reentry-passkey-stepup-spent:"

WRONG_CODE = "That code did not work. Enter the current code from your authenticator app."
PASSKEY_STEPUP_REFUSED = (
    "The passkey confirmation has expired or was already used. Confirm with your passkey again, or enter the "
    "current code from your authenticator app."
)


def passkey_stepup_grant(session, user) -> str:
    """After a verified passkey assertion (hipaamail): grant one step-up to `user` in this session, replacing any
    earlier grant, and return its nonce for the page."""
    nonce = secrets.token_urlsafe(32)
    session[PASSKEY_STEPUP_SESSION_KEY] = {"user": user.pk, "nonce": nonce, "at": time.time()}
    return nonce


def _passkey_stepup_spend(session, user, nonce: str) -> bool:
    """Whether `nonce` is this session's live grant for `user`. The grant leaves the session whenever a nonce is
    presented, right or wrong, so a guess also spends it."""
    grant = session.pop(PASSKEY_STEPUP_SESSION_KEY, None)
    if not isinstance(grant, dict) or not isinstance(grant.get("nonce"), str):
        return False
    age = time.time() - float(grant.get("at") or 0)
    return (
        grant.get("user") == user.pk
        and hmac.compare_digest(grant["nonce"].encode(), nonce.encode())
        and 0 <= age <= PASSKEY_STEPUP_MAX_AGE_SECONDS
        and cache.add(_SPENT_CACHE_PREFIX + grant["nonce"], 1, PASSKEY_STEPUP_MAX_AGE_SECONDS + 60)
    )


def second_factor_reentry_check(
    *, user, session, code: str, passkey_stepup: str, object_type: str, object_id: object, details: dict
) -> bool:
    """R-SEC-MFA re-entry: a passkey step-up granted in this session (single use, this user, at most
    PASSKEY_STEPUP_MAX_AGE_SECONDS old) or a current code from one of the user's own devices. A refusal is audited
    as `mfa.reentry_failed` on the object the action is about, with `details` (ids and codes only)."""
    nonce = (passkey_stepup or "").strip()
    code = (code or "").strip().replace(" ", "")
    if nonce and _passkey_stepup_spend(session, user, nonce):
        return True
    if code and match_token(user, code) is not None:
        return True
    audit_record(
        actor=user, action=actions.MFA_REENTRY_FAILED, object_type=object_type, object_id=object_id, details=details
    )
    return False
