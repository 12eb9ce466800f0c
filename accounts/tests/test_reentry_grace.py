"""accounts.reentry.form_valid_within_grace (R-SEC-MFA, issue 17): within the step-up's grace a step-up form's
empty code is no error; a typed code that is malformed, or any other error, still is; outside the grace nothing is
excused."""
import time

import pytest
from django import forms
from django.contrib.sessions.backends.db import SessionStore

from accounts import reentry
from accounts.tests.factories import staff_make

pytestmark = pytest.mark.django_db


class _StepUpForm(forms.Form):
    code = forms.CharField(max_length=8, required=False)
    comment = forms.CharField(required=False, max_length=5)

    def clean(self):  # as the product's step-up forms do: a code or a passkey is required
        cleaned = super().clean()
        if not cleaned.get("code") and "code" not in self.errors:
            self.add_error("code", "That code did not work.")
        return cleaned


@pytest.fixture
def officer():
    return staff_make(role="compliance officer", with_totp=True)


@pytest.fixture
def session(officer, settings):
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300
    store = SessionStore()
    store.create()
    store[reentry.STEPUP_GRACE_SESSION_KEY] = {"user": officer.pk, "until": time.time() + 200, "by": "code"}
    return store


def test_r_sec_mfa_within_the_grace_an_empty_code_is_no_error(officer, session):
    form = _StepUpForm({"code": "", "comment": "ok"})

    assert reentry.form_valid_within_grace(form, session=session, user=officer) is True
    assert form.cleaned_data == {"code": "", "comment": "ok"}


def test_r_sec_mfa_the_grace_excuses_nothing_else(officer, session):
    too_long = _StepUpForm({"code": "", "comment": "far too long"})
    malformed = _StepUpForm({"code": "123456789", "comment": ""})

    assert reentry.form_valid_within_grace(too_long, session=session, user=officer) is False
    assert reentry.form_valid_within_grace(malformed, session=session, user=officer) is False
    assert "code" in malformed.errors


def test_r_sec_mfa_outside_the_grace_an_empty_code_is_an_error(officer, session):
    other = staff_make(role="compliance officer", with_totp=True)
    form = _StepUpForm({"code": ""})

    assert reentry.form_valid_within_grace(form, session=session, user=other) is False
    session[reentry.STEPUP_GRACE_SESSION_KEY]["until"] = time.time() - 1
    assert reentry.form_valid_within_grace(_StepUpForm({"code": ""}), session=session, user=officer) is False


@pytest.mark.parametrize("grace_seconds", [300, 0])
def test_r_sec_mfa_the_sign_in_code_starts_the_grace_for_that_user_only(client, officer, settings, grace_seconds):
    """One code per person from sign-in to the first approval (issue 17): passing the second factor at sign-in
    starts the same bounded grace a step-up does; with the grace turned off it starts nothing."""
    from conftest import totp_code

    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = grace_seconds
    client.force_login(officer)

    response = client.post("/account/two-factor/", {"token": totp_code(officer)})

    assert response.status_code == 302
    session = client.session
    remaining = reentry.stepup_grace_remaining(session, officer)
    if grace_seconds:
        assert 295 <= remaining <= 300
        assert session[reentry.STEPUP_GRACE_SESSION_KEY]["by"] == "sign-in"
        assert reentry.stepup_grace_remaining(session, staff_make(role="compliance officer")) == 0
    else:
        assert remaining == 0 and reentry.STEPUP_GRACE_SESSION_KEY not in session


def test_r_sec_mfa_a_wrong_sign_in_code_starts_no_grace(client, officer, settings):
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300
    client.force_login(officer)

    response = client.post("/account/two-factor/", {"token": "000000"})

    assert response.status_code == 200
    assert reentry.stepup_grace_remaining(client.session, officer) == 0
