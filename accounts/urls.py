"""Staff account pages: allauth's (sign-in, sign-out, password reset), the second factor (codes, recovery codes,
devices) and passkeys, mounted at the root by hipaamail.urls. No namespace, so the names stay allauth's and
django-otp-webauthn's ("account_login", "otp_verify", "otp_webauthn:…"). Deny by default (accounts.access): each
page a person needs before the second factor is marked here."""
from allauth.account import urls as allauth_urls
from django.urls import include, path

from accounts import views
from accounts.access import public, public_patterns, signed_in
from accounts.language import language_choose

# The allauth pages a person needs before signing in. Every other allauth page (password change, email
# management) keeps the default and needs the second factor. Sign-up is closed (StaffAccountAdapter).
ALLAUTH_PUBLIC = {
    "account_login",
    "account_logout",
    # Sign-up is closed (StaffAccountAdapter): its page says so to anyone, rather than sending a visitor to sign in,
    # whose page used to offer sign-up again (a loop).
    "account_signup",
    "account_inactive",
    "account_email_verification_sent",
    "account_confirm_email",
    "account_reset_password",
    "account_reset_password_done",
    "account_reset_password_from_key",
    "account_reset_password_from_key_done",
}

# Passkeys (R-SEC-MFA), django-otp-webauthn's endpoints in its URL namespace. Adding one keeps the default (a staff
# member already verified by a second factor, or a stolen password could add the thief's passkey); using one is the
# second factor itself, so it needs only the signed-in user, like the code page. No passwordless sign-in: the
# package refuses it (OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN) and an anonymous request never gets this far.
PASSKEY_URLS = [
    path("add/begin/", views.PasskeyRegistrationBeginView.as_view(), name="credential-registration-begin"),
    path("add/complete/", views.PasskeyRegistrationCompleteView.as_view(), name="credential-registration-complete"),
    path(
        "verify/begin/", signed_in(views.PasskeyVerifyBeginView.as_view()), name="credential-authentication-begin"
    ),
    path(
        "verify/complete/",
        signed_in(views.PasskeyVerifyCompleteView.as_view()),
        name="credential-authentication-complete",
    ),
    # The step-up before approving, sending, scheduling, cancelling or exporting by passkey instead of a code: it
    # confirms an action of a staff member already verified, so it keeps the default.
    path("step-up/begin/", views.PasskeyStepUpBeginView.as_view(), name="stepup-begin"),
    path("step-up/complete/", views.PasskeyStepUpCompleteView.as_view(), name="stepup-complete"),
]

urlpatterns = [
    # The header's language switch (ADR 0030): the sign-in page has it too, so it is public; it changes nothing but the
    # language (and, for a signed-in staff member, their stored choice of it).
    path("account/language/", public(language_choose), name="staff_language"),
    path("accounts/", include(public_patterns(allauth_urls.urlpatterns, names=ALLAUTH_PUBLIC))),
    path("account/two-factor/", signed_in(views.otp_verify), name="otp_verify"),
    path("account/two-factor/setup/", signed_in(views.otp_setup), name="otp_setup"),
    path("account/two-factor/recovery-codes/", views.otp_recovery_codes, name="otp_recovery_codes"),
    path(
        "account/two-factor/recovery-codes/new/",
        views.otp_recovery_codes_regenerate,
        name="otp_recovery_codes_regenerate",
    ),
    path("account/two-factor/devices/", views.otp_devices, name="otp_devices"),
    path("account/two-factor/devices/remove/", views.otp_device_remove, name="otp_device_remove"),
    path("account/two-factor/passkeys/", include((PASSKEY_URLS, "otp_webauthn"))),
]
