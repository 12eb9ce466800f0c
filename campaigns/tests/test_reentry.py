"""R-SEC-MFA step-up (accounts.reentry): the one check before approving, sending now, scheduling, cancelling and
exporting. It takes a current code, or a passkey step-up granted in the session (single use, same user, at most
two minutes old); after either, the session's short grace (HIPAAMAIL_STEPUP_GRACE_SECONDS) for the same user.
Every pass is audited with how it passed, every refusal too. accounts/tests/test_passkeys.py drives the grant
through the WebAuthn endpoints."""
import time

import pytest
from django.contrib.sessions.backends.db import SessionStore

from accounts import reentry
from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from conftest import totp_code

pytestmark = pytest.mark.django_db

DETAILS = {"for": "campaign.approve"}


def _check(user, session, *, code: str = "", passkey_stepup: str = "") -> bool:
    return reentry.second_factor_reentry_check(
        user=user,
        session=session,
        code=code,
        passkey_stepup=passkey_stepup,
        object_type="campaign",
        object_id=41,
        details=DETAILS,
    )


@pytest.fixture
def officer():
    return staff_make(role="compliance officer", with_totp=True)


@pytest.fixture
def session():
    store = SessionStore()
    store.create()
    return store


@pytest.fixture
def no_grace(settings):
    """The single-use rules of each factor, seen without the grace that would pass the next step-up anyway."""
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 0


def _passes(user) -> list[str]:
    return [
        event.details["by"]
        for event in AuditEvent.objects.filter(actor=user, action="mfa.reentry_passed").order_by("id")
    ]


def _failures(user) -> list[tuple[str, str, dict]]:
    return [
        (event.object_type, event.object_id, event.details)
        for event in AuditEvent.objects.filter(actor=user, action="mfa.reentry_failed").order_by("id")
    ]


def test_r_sec_mfa_a_passkey_stepup_is_accepted_once(officer, session, no_grace):
    """R-SEC-MFA: a granted step-up confirms one action; the same nonce again is refused and audited."""
    nonce = reentry.passkey_stepup_grant(session, officer)

    assert _check(officer, session, passkey_stepup=nonce) is True
    assert reentry.PASSKEY_STEPUP_SESSION_KEY not in session
    assert _failures(officer) == []

    assert _check(officer, session, passkey_stepup=nonce) is False
    assert _failures(officer) == [("campaign", "41", DETAILS)]


def test_r_sec_mfa_a_passkey_stepup_spent_by_a_concurrent_request_is_refused(officer, session, no_grace):
    """R-SEC-MFA: two requests that read the same session before either saved it cannot both spend the grant."""
    nonce = reentry.passkey_stepup_grant(session, officer)
    other_copy = SessionStore()
    other_copy[reentry.PASSKEY_STEPUP_SESSION_KEY] = dict(session[reentry.PASSKEY_STEPUP_SESSION_KEY])

    assert _check(officer, session, passkey_stepup=nonce) is True
    assert _check(officer, other_copy, passkey_stepup=nonce) is False
    assert len(_failures(officer)) == 1


@pytest.mark.parametrize("age, accepted", [(reentry.PASSKEY_STEPUP_MAX_AGE_SECONDS - 2, True),
                                           (reentry.PASSKEY_STEPUP_MAX_AGE_SECONDS + 1, False)])
def test_r_sec_mfa_a_passkey_stepup_expires_after_two_minutes(officer, session, age, accepted, no_grace):
    nonce = reentry.passkey_stepup_grant(session, officer)
    session[reentry.PASSKEY_STEPUP_SESSION_KEY]["at"] -= age

    assert _check(officer, session, passkey_stepup=nonce) is accepted
    assert len(_failures(officer)) == (0 if accepted else 1)
    assert reentry.PASSKEY_STEPUP_SESSION_KEY not in session  # spent either way


def test_r_sec_mfa_a_passkey_stepup_granted_to_another_user_is_refused(officer, session, no_grace):
    """R-SEC-MFA: a grant names its user; another account in the same session (a new sign-in) cannot use it."""
    colleague = staff_make(role="compliance officer", with_totp=True)
    nonce = reentry.passkey_stepup_grant(session, colleague)

    assert _check(officer, session, passkey_stepup=nonce) is False
    assert _failures(officer) == [("campaign", "41", DETAILS)]


def test_r_sec_mfa_a_forged_passkey_stepup_is_refused_and_spends_the_real_one(officer, session, no_grace):
    """R-SEC-MFA: a guessed nonce is refused and audited; the guess also spends the grant, so guessing cannot
    go on until it hits."""
    nonce = reentry.passkey_stepup_grant(session, officer)

    assert _check(officer, session, passkey_stepup="A" * len(nonce)) is False
    assert _check(officer, session, passkey_stepup=nonce) is False
    assert len(_failures(officer)) == 2


def test_r_sec_mfa_a_passkey_stepup_without_a_grant_is_refused(officer, session, no_grace):
    assert _check(officer, session, passkey_stepup="anything") is False
    assert _failures(officer) == [("campaign", "41", DETAILS)]


def test_r_sec_mfa_a_current_code_still_works_and_a_wrong_one_is_audited(officer, session, no_grace):
    """R-SEC-MFA: the code, as before: the current one passes, a wrong or missing one is audited as refused."""
    code = totp_code(officer)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    assert _check(officer, session, code=wrong) is False
    assert _check(officer, session, code="") is False
    code = totp_code(officer)  # the wrong code started the device's throttle; a person would wait it out
    assert _check(officer, session, code=f"{code[:3]} {code[3:]}") is True
    assert _failures(officer) == [("campaign", "41", DETAILS)] * 2


def test_r_sec_mfa_a_spent_stepup_with_a_current_code_passes_on_the_code(officer, session, no_grace):
    """A form that still carries a spent nonce (an export page after its download) passes on a typed code."""
    nonce = reentry.passkey_stepup_grant(session, officer)
    assert _check(officer, session, passkey_stepup=nonce) is True

    assert _check(officer, session, passkey_stepup=nonce, code=totp_code(officer)) is True
    assert _failures(officer) == []


# --- The grace (issue 17): one code for a few steps in a row, bounded and audited ---------------------------------


def _end_grace_in(session, seconds: float) -> None:
    session[reentry.STEPUP_GRACE_SESSION_KEY]["until"] = time.time() + seconds


def test_r_sec_mfa_after_a_code_the_next_step_ups_pass_on_the_grace_and_each_is_audited(officer, session, settings):
    """R-SEC-MFA: a code starts a grace of HIPAAMAIL_STEPUP_GRACE_SECONDS in this session; the step-ups within it
    pass without a code, and each one is on the audit trail with how it passed."""
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300

    code = totp_code(officer)
    assert _check(officer, session, code=code) is True
    assert 295 <= reentry.stepup_grace_remaining(session, officer) <= 300
    assert _check(officer, session) is True
    assert _check(officer, session, code=code) is True  # the code just used, typed again (issue 17)

    assert _passes(officer) == ["code", "grace", "grace"]
    assert [event.details for event in AuditEvent.objects.filter(action="mfa.reentry_passed").order_by("id")] == [
        {"for": "campaign.approve", "by": "code"},
        {"for": "campaign.approve", "by": "grace"},
        {"for": "campaign.approve", "by": "grace"},
    ]
    assert _failures(officer) == []


def test_r_sec_mfa_within_the_grace_a_wrong_factor_is_still_refused(officer, session, settings):
    """R-SEC-MFA: the grace spares a factor; it does not accept a wrong one. A wrong code or a spent passkey
    confirmation presented within it is refused and audited, and the grace stays."""
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300
    nonce = reentry.passkey_stepup_grant(session, officer)
    assert _check(officer, session, passkey_stepup=nonce) is True
    code = totp_code(officer)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    assert _check(officer, session, code=wrong) is False
    assert _check(officer, session, passkey_stepup=nonce) is False
    assert _check(officer, session) is True
    assert _passes(officer) == ["passkey", "grace"]
    assert _failures(officer) == [("campaign", "41", DETAILS)] * 2


def test_r_sec_mfa_a_passkey_starts_the_grace_too(officer, session, settings):
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300
    nonce = reentry.passkey_stepup_grant(session, officer)

    assert _check(officer, session, passkey_stepup=nonce) is True
    assert _check(officer, session) is True
    assert _passes(officer) == ["passkey", "grace"]


def test_r_sec_mfa_the_grace_expires_and_a_step_on_it_does_not_extend_it(officer, session, settings):
    """R-SEC-MFA: the grace ends a fixed time after the factor was shown: passing on it does not move its end, and
    after its end the code is asked again (the refusal audited)."""
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300
    assert _check(officer, session, code=totp_code(officer)) is True
    _end_grace_in(session, 5)
    until = session[reentry.STEPUP_GRACE_SESSION_KEY]["until"]

    assert _check(officer, session) is True
    assert session[reentry.STEPUP_GRACE_SESSION_KEY]["until"] == until

    _end_grace_in(session, -1)
    assert reentry.stepup_grace_remaining(session, officer) == 0
    assert _check(officer, session) is False
    assert _passes(officer) == ["code", "grace"]
    assert _failures(officer) == [("campaign", "41", DETAILS)]


def test_r_sec_mfa_the_grace_never_reaches_another_session(officer, session, settings):
    """R-SEC-MFA: the same officer signed in elsewhere (another browser, another device) has no grace there."""
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300
    elsewhere = SessionStore()
    elsewhere.create()

    assert _check(officer, session, code=totp_code(officer)) is True
    assert reentry.stepup_grace_remaining(elsewhere, officer) == 0
    assert _check(officer, elsewhere) is False
    assert _failures(officer) == [("campaign", "41", DETAILS)]


def test_r_sec_mfa_the_grace_never_reaches_another_user(officer, session, settings):
    """R-SEC-MFA: the grace names its user: another account in the same browser session cannot use it."""
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300
    colleague = staff_make(role="compliance officer", with_totp=True)

    assert _check(officer, session, code=totp_code(officer)) is True
    assert reentry.stepup_grace_remaining(session, colleague) == 0
    assert _check(colleague, session) is False
    assert _passes(colleague) == [] and len(_failures(colleague)) == 1


def test_r_sec_mfa_the_grace_ends_when_the_session_does(officer, session, settings):
    """R-SEC-MFA: signing out flushes the session, and the grace with it."""
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300
    assert _check(officer, session, code=totp_code(officer)) is True

    session.flush()

    assert _check(officer, session) is False
    assert len(_failures(officer)) == 1


def test_r_sec_mfa_a_grace_of_zero_turns_it_off(officer, session, no_grace):
    assert _check(officer, session, code=totp_code(officer)) is True

    assert reentry.STEPUP_GRACE_SESSION_KEY not in session
    assert _check(officer, session) is False
    assert _passes(officer) == ["code"]


def test_r_sec_mfa_a_lowered_setting_shortens_a_grace_already_given(officer, session, settings):
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300
    assert _check(officer, session, code=totp_code(officer)) is True

    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 60
    assert 0 < reentry.stepup_grace_remaining(session, officer) <= 60


# --- An honest refusal -------------------------------------------------------------------------------------


def _refusal(user, session, **factor) -> str:
    return reentry.second_factor_reentry(
        user=user, session=session, object_type="campaign", object_id=41, details=DETAILS,
        **{"code": "", "passkey_stepup": "", **factor},
    ).refusal


def test_r_sec_mfa_a_code_just_used_is_refused_as_used_not_as_wrong(officer, session, no_grace):
    """django-otp's TOTP takes a code once: the same code again says to wait for the next one, and is audited
    as a refusal like any other."""
    code = totp_code(officer)
    assert _check(officer, session, code=code) is True

    assert _refusal(officer, session, code=code) == str(reentry.REUSED_CODE)
    assert "That code was just used; wait for the next one" in _refusal(officer, session, code=code)
    assert _failures(officer) == [("campaign", "41", DETAILS)] * 2


def test_r_sec_mfa_a_wrong_code_and_a_spent_passkey_say_what_they_are(officer, session, no_grace):
    code = totp_code(officer)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    assert _refusal(officer, session, code=wrong) == str(reentry.WRONG_CODE)
    assert _refusal(officer, session, passkey_stepup="spent") == str(reentry.PASSKEY_STEPUP_REFUSED)
    assert _refusal(officer, session) == str(reentry.WRONG_CODE)


def test_r_sec_mfa_a_code_tried_while_the_device_is_throttled_says_to_wait(officer, session, no_grace):
    code = totp_code(officer)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert _refusal(officer, session, code=wrong) == str(reentry.WRONG_CODE)  # this one starts the throttle

    assert _refusal(officer, session, code=code) == str(reentry.THROTTLED_CODE)
    assert len(_failures(officer)) == 2
