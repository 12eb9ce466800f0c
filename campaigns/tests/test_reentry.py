"""R-SEC-MFA step-up (accounts.reentry): the one check before approving, sending now, scheduling, cancelling and
exporting. It takes a current code, or a passkey step-up granted in the session (single use, same user, at most
two minutes old). accounts/tests/test_passkeys.py drives the grant through the WebAuthn endpoints."""
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


def _failures(user) -> list[tuple[str, str, dict]]:
    return [
        (event.object_type, event.object_id, event.details)
        for event in AuditEvent.objects.filter(actor=user, action="mfa.reentry_failed").order_by("id")
    ]


def test_r_sec_mfa_a_passkey_stepup_is_accepted_once(officer, session):
    """R-SEC-MFA: a granted step-up confirms one action; the same nonce again is refused and audited."""
    nonce = reentry.passkey_stepup_grant(session, officer)

    assert _check(officer, session, passkey_stepup=nonce) is True
    assert reentry.PASSKEY_STEPUP_SESSION_KEY not in session
    assert _failures(officer) == []

    assert _check(officer, session, passkey_stepup=nonce) is False
    assert _failures(officer) == [("campaign", "41", DETAILS)]


def test_r_sec_mfa_a_passkey_stepup_spent_by_a_concurrent_request_is_refused(officer, session):
    """R-SEC-MFA: two requests that read the same session before either saved it cannot both spend the grant."""
    nonce = reentry.passkey_stepup_grant(session, officer)
    other_copy = SessionStore()
    other_copy[reentry.PASSKEY_STEPUP_SESSION_KEY] = dict(session[reentry.PASSKEY_STEPUP_SESSION_KEY])

    assert _check(officer, session, passkey_stepup=nonce) is True
    assert _check(officer, other_copy, passkey_stepup=nonce) is False
    assert len(_failures(officer)) == 1


@pytest.mark.parametrize("age, accepted", [(reentry.PASSKEY_STEPUP_MAX_AGE_SECONDS - 2, True),
                                           (reentry.PASSKEY_STEPUP_MAX_AGE_SECONDS + 1, False)])
def test_r_sec_mfa_a_passkey_stepup_expires_after_two_minutes(officer, session, age, accepted):
    nonce = reentry.passkey_stepup_grant(session, officer)
    session[reentry.PASSKEY_STEPUP_SESSION_KEY]["at"] -= age

    assert _check(officer, session, passkey_stepup=nonce) is accepted
    assert len(_failures(officer)) == (0 if accepted else 1)
    assert reentry.PASSKEY_STEPUP_SESSION_KEY not in session  # spent either way


def test_r_sec_mfa_a_passkey_stepup_granted_to_another_user_is_refused(officer, session):
    """R-SEC-MFA: a grant names its user; another account in the same session (a new sign-in) cannot use it."""
    colleague = staff_make(role="compliance officer", with_totp=True)
    nonce = reentry.passkey_stepup_grant(session, colleague)

    assert _check(officer, session, passkey_stepup=nonce) is False
    assert _failures(officer) == [("campaign", "41", DETAILS)]


def test_r_sec_mfa_a_forged_passkey_stepup_is_refused_and_spends_the_real_one(officer, session):
    """R-SEC-MFA: a guessed nonce is refused and audited; the guess also spends the grant, so guessing cannot
    go on until it hits."""
    nonce = reentry.passkey_stepup_grant(session, officer)

    assert _check(officer, session, passkey_stepup="A" * len(nonce)) is False
    assert _check(officer, session, passkey_stepup=nonce) is False
    assert len(_failures(officer)) == 2


def test_r_sec_mfa_a_passkey_stepup_without_a_grant_is_refused(officer, session):
    assert _check(officer, session, passkey_stepup="anything") is False
    assert _failures(officer) == [("campaign", "41", DETAILS)]


def test_r_sec_mfa_a_current_code_still_works_and_a_wrong_one_is_audited(officer, session):
    """R-SEC-MFA: the code, as before: the current one passes, a wrong or missing one is audited as refused."""
    code = totp_code(officer)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    assert _check(officer, session, code=wrong) is False
    assert _check(officer, session, code="") is False
    code = totp_code(officer)  # the wrong code started the device's throttle; a person would wait it out
    assert _check(officer, session, code=f"{code[:3]} {code[3:]}") is True
    assert _failures(officer) == [("campaign", "41", DETAILS)] * 2


def test_r_sec_mfa_a_spent_stepup_with_a_current_code_passes_on_the_code(officer, session):
    """A form that still carries a spent nonce (an export page after its download) passes on a typed code."""
    nonce = reentry.passkey_stepup_grant(session, officer)
    assert _check(officer, session, passkey_stepup=nonce) is True

    assert _check(officer, session, passkey_stepup=nonce, code=totp_code(officer)) is True
    assert _failures(officer) == []
