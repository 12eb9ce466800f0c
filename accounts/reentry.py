"""R-SEC-MFA step-up: the second factor asked again before approving, sending now, scheduling or cancelling a
campaign, approving a journey version and before exporting a report. One check for all of them
(campaigns.views.review, campaigns.views.reports, journeys.views.review).

It accepts either a current code from one of the user's own django-otp devices (TOTP or a recovery code; the
devices throttle repeated failures), or a passkey step-up: hipaamail's step-up endpoint verifies a WebAuthn
assertion of one of the user's own passkeys and calls `passkey_stepup_grant`, which keeps a random nonce in the
session and hands it to the page; the form sends it back in its hidden `passkey_stepup` field. A grant is good
for one action, for the user it was granted to, for PASSKEY_STEPUP_MAX_AGE_SECONDS. This module holds no WebAuthn
code: hipaamail (which may import campaigns, not the reverse) does the ceremony.

The grace (issue 17): after a step-up passed by a code or a passkey, further step-ups by the same user in the same
session pass without asking again for settings.HIPAAMAIL_STEPUP_GRACE_SECONDS (0: never): with no factor, or with
the code just used typed again; a wrong code or a spent passkey confirmation is still refused. The grace is kept in the
session, so it never reaches another session (another browser, another device) and ends at sign-out (the session is
flushed); it names its user, so a new sign-in in the same browser cannot use it; a step passed on the grace does not
extend it, so it ends at a fixed time after the factor was last shown. Every step passed is audited
(`mfa.reentry_passed`, details "by": "code", "passkey" or "grace"), every refusal too (`mfa.reentry_failed`).

A code django-otp refuses because it was already accepted (TOTP codes are single use: the device keeps the last
time step it accepted) is told apart from a wrong one, so the person learns to wait for the next code.
"""
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp import match_token
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import actions
from audit.services import audit_record

PASSKEY_STEPUP_SESSION_KEY = "reentry_passkey_stepup"
PASSKEY_STEPUP_MAX_AGE_SECONDS = 120
# Marks a nonce as spent in the cache too: two requests carrying the same session at once each read the grant
# before either saves the session without it; cache.add (SET NX on Redis) lets only one of them spend it.
_SPENT_CACHE_PREFIX = "reentry-passkey-stepup-spent:"

STEPUP_GRACE_SESSION_KEY = "reentry_stepup_grace"

# How a step-up was satisfied, in the details of mfa.reentry_passed.
BY_CODE = "code"
BY_PASSKEY = "passkey"
BY_GRACE = "grace"

WRONG_CODE = _("That code did not work. Enter the current code from your authenticator app.")
REUSED_CODE = _(
    "That code was just used; wait for the next one in your authenticator app (a new code comes every 30 "
    "seconds), then enter it."
)
THROTTLED_CODE = _("Too many codes were tried. Wait a few seconds, then enter the current code from your app.")
PASSKEY_STEPUP_REFUSED = _(
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


def stepup_grace_seconds() -> int:
    """The configured grace (settings.HIPAAMAIL_STEPUP_GRACE_SECONDS, env STEPUP_GRACE_SECONDS); 0 or less: none."""
    return max(0, int(getattr(settings, "HIPAAMAIL_STEPUP_GRACE_SECONDS", 0) or 0))


def _grace_start(session, user, *, by: str) -> None:
    seconds = stepup_grace_seconds()
    if seconds:
        session[STEPUP_GRACE_SESSION_KEY] = {"user": user.pk, "until": time.time() + seconds, "by": by}
    else:
        session.pop(STEPUP_GRACE_SESSION_KEY, None)


def stepup_grace_remaining(session, user) -> int:
    """Whole seconds left of this session's grace for `user` (0: none, expired, another user's, or turned off).
    A grace longer than the configured one (the setting was lowered since) counts only as long as the setting."""
    grace = session.get(STEPUP_GRACE_SESSION_KEY)
    seconds = stepup_grace_seconds()
    if not seconds or not isinstance(grace, dict) or grace.get("user") != getattr(user, "pk", None):
        return 0
    left = float(grace.get("until") or 0) - time.time()
    return int(min(left, seconds)) if left > 0 else 0


def stepup_grace_begin_at_sign_in(session, user) -> None:
    """The second factor passed at sign-in starts the grace too, as a step-up would (GitHub's "sudo mode" does the
    same): a person who typed a code a moment ago is not asked for another one for their first action, so a
    campaign goes from sign-in to sent with one code per person (issue 17). The sign-in is audited as such."""
    _grace_start(session, user, by="sign-in")


def stepup_grace_end(session) -> None:
    session.pop(STEPUP_GRACE_SESSION_KEY, None)


def _code_was_just_used(user, code: str) -> bool:
    """Whether `code` is a TOTP code of one of the user's devices within its tolerance window that the device has
    already accepted (its time step is not after the device's last accepted one): django-otp refuses it as spent."""
    if not code.isdigit():
        return False
    for device in TOTPDevice.objects.filter(user=user, confirmed=True):
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        totp.time = time.time()
        drift = totp.drift
        for offset in range(-device.tolerance, device.tolerance + 1):
            totp.drift = drift + offset
            if totp.t() <= device.last_t and totp.token() == int(code):
                return True
    return False


def _code_throttled(user) -> bool:
    return any(not device.verify_is_allowed()[0] for device in TOTPDevice.objects.filter(user=user, confirmed=True))


@dataclass(frozen=True)
class Reentry:
    """The outcome of a step-up: `by` how it passed ("code", "passkey", "grace"), or the `refusal` to show."""

    by: str = ""
    refusal: str = ""

    def __bool__(self) -> bool:
        return bool(self.by)


def second_factor_reentry(
    *, user, session, code: str, passkey_stepup: str, object_type: str, object_id: object, details: dict
) -> Reentry:
    """R-SEC-MFA re-entry: a passkey step-up granted in this session (single use, this user, at most
    PASSKEY_STEPUP_MAX_AGE_SECONDS old), a current code from one of the user's own devices, or this session's grace
    for `user`: within it no factor is needed, and the code just used may be typed again; a factor presented that
    is wrong (another code, a spent passkey confirmation) is refused all the same. A code or passkey starts the
    grace anew; a step passed on the grace does not extend it. Each pass is audited as
    `mfa.reentry_passed` with `details` and "by"; a refusal as `mfa.reentry_failed` with `details` (ids and codes
    only), on the object the action is about. A refusal says why: a wrong code, a code just used, too many tries,
    a spent or expired passkey confirmation."""
    nonce = (passkey_stepup or "").strip()
    code = (code or "").strip().replace(" ", "")
    grace = stepup_grace_remaining(session, user) > 0
    # Before the code is tried: a throttled device refuses even the right code without looking at it, and one
    # wrong code here starts the throttle, which must not read as "too many" the first time.
    throttled = bool(code) and _code_throttled(user)
    by = ""
    if nonce and _passkey_stepup_spend(session, user, nonce):
        by = BY_PASSKEY
    elif code and match_token(user, code) is not None:
        by = BY_CODE
    elif grace and not nonce and not code:
        by = BY_GRACE
    elif grace and not nonce and _code_was_just_used(user, code):
        by = BY_GRACE  # the code that started the grace, typed again: what the grace is for
    if by:
        if by != BY_GRACE:
            _grace_start(session, user, by=by)
        audit_record(
            actor=user,
            action=actions.MFA_REENTRY_PASSED,
            object_type=object_type,
            object_id=object_id,
            details={**details, "by": by},
        )
        return Reentry(by=by)
    if nonce and not code:
        refusal = PASSKEY_STEPUP_REFUSED
    elif _code_was_just_used(user, code):
        refusal = REUSED_CODE
    elif throttled:
        refusal = THROTTLED_CODE
    else:
        refusal = WRONG_CODE
    audit_record(
        actor=user, action=actions.MFA_REENTRY_FAILED, object_type=object_type, object_id=object_id, details=details
    )
    return Reentry(refusal=str(refusal))


def second_factor_reentry_check(
    *, user, session, code: str, passkey_stepup: str, object_type: str, object_id: object, details: dict
) -> bool:
    """second_factor_reentry, as a yes or no."""
    return bool(
        second_factor_reentry(
            user=user,
            session=session,
            code=code,
            passkey_stepup=passkey_stepup,
            object_type=object_type,
            object_id=object_id,
            details=details,
        )
    )


def form_valid_within_grace(form, *, session, user) -> bool:
    """`form.is_valid()`, except that within this session's grace an empty code is no error (the forms ask for a
    code or a passkey; the grace makes both unneeded). Any other error stands."""
    if form.is_valid():
        return True
    if not stepup_grace_remaining(session, user) or set(form.errors) != {"code"}:
        return False
    if (form.data.get(form.add_prefix("code")) or "").strip():
        return False  # a code was typed and is malformed: say so
    del form.errors["code"]
    form.cleaned_data["code"] = ""
    return True


def stepup_grace_until(session, user):
    """The instant this session's grace for `user` ends, or None: for the pages that say "no code is needed until
    …" (only those whose views accept an empty code within the grace, form_valid_within_grace)."""
    left = stepup_grace_remaining(session, user)
    return timezone.now() + timedelta(seconds=left) if left else None
