"""URLs. Deny by default (hipaamail.access): every page needs a verified staff member unless it is marked
here with public(...) or signed_in(...), so each exception is visible in this file or an app's urls.py."""
from allauth.account import urls as allauth_urls
from django.contrib import admin
from django_otp.admin import OTPAdminSite
from django.urls import include, path

from hipaamail import views
from audit import urls as audit_urls
from campaigns import views as campaign_views
from campaigns import views_history
from consent import urls_portal as consent_portal_urls
from hipaamail.access import patient_pages, public, public_patterns, signed_in

# The allauth pages a person needs before signing in. Every other allauth page (password change, email
# management) keeps the default and needs the second factor. Sign-up is closed (StaffAccountAdapter).
ALLAUTH_PUBLIC = {
    "account_login",
    "account_logout",
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

# Defence in depth: the admin site itself also refuses a user who has not passed the second factor.
admin.site.__class__ = OTPAdminSite

urlpatterns = [
    path("", views.home, name="home"),
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
    path("campaigns/", include("campaigns.urls")),
    path("consent/", include("consent.urls")),
    # The audit pages, plus a patient's history: the trail joined with the messages the patient received, so
    # composed in campaigns (dependencies point campaigns -> consent -> audit) and mounted in the audit namespace.
    path(
        "audit/",
        include((
            [
                *audit_urls.urlpatterns,
                path("patients/<int:patient_id>/", views_history.patient_history, name="patient_history"),
            ],
            audit_urls.app_name,
        )),
    ),
    path("reports/", include("campaigns.urls_reports")),
    # Patient pages: no staff account; consent checks the patient's emailed one-time code itself.
    path("my/", include((patient_pages(consent_portal_urls.urlpatterns), "portal"))),
    # R-RFC8058 one-click unsubscribe: a POST without cookies or login; the signed token is the credential.
    path("unsubscribe/<str:token>/", public(campaign_views.unsubscribe), name="unsubscribe"),
    # Provider webhooks and opt-in tracking: public views, each checks its own signature or signed token.
    path("webhooks/", include("campaigns.urls_webhooks")),
    path("t/", include("campaigns.urls_tracking")),
    path("admin/", admin.site.urls),
]
