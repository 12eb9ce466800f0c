"""Staff home and the second-factor pages. Thin: the work is in accounts.mfa."""
import logging

import segno
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp_webauthn import exceptions as webauthn_exceptions
from django_otp_webauthn import views as webauthn_views
from django_otp_webauthn.exceptions import OTPWebAuthnApiError

from accounts import mfa, reentry
from accounts.forms import OTPTokenForm

logger = logging.getLogger(__name__)


def _next_url(request, default: str = "home") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


def _with_next(url: str, next_url: str) -> str:
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


def signed_in_message(request) -> None:
    """Said once the second factor is passed, not when the password was right (accounts.adapters)."""
    messages.success(request, _("Signed in as %(email)s.") % {"email": request.user.email})


@require_http_methods(["GET", "HEAD", "POST"])
def otp_verify(request):
    """Enter the second factor. Users without a device are sent to enroll one first."""
    if not user_has_device(request.user):
        return redirect(_with_next(reverse("otp_setup"), _next_url(request, "")))
    form = OTPTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = mfa.otp_verify(user=request.user, token=form.cleaned_data["token"])
        if device is not None:
            otp_login(request, device)
            # The code just typed spares the next step-up for a few minutes (ADR 0024): one code per person
            # from sign-in to the first approval or export.
            reentry.stepup_grace_begin_at_sign_in(request.session, request.user)
            signed_in_message(request)
            return redirect(_next_url(request))
        form.add_error("token", _("That code did not work. Check the time on your phone and try again."))
    return render(
        request,
        "account/otp_verify.html",
        {"form": form, "next": _next_url(request, ""), "has_passkey": mfa.passkey_exists(user=request.user)},
    )


@require_http_methods(["GET", "HEAD", "POST"])
def otp_setup(request):
    """Enroll an authenticator app: scan the QR code, type the first code; recovery codes follow."""
    if user_has_device(request.user) and not request.user.is_verified():
        # Adding a device needs the factor the account already has, or a password alone would do.
        return redirect(_with_next(reverse("otp_verify"), request.get_full_path()))
    device = mfa.totp_device_pending(user=request.user)
    form = OTPTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if mfa.totp_device_confirm(user=request.user, device=device, token=form.cleaned_data["token"]):
            otp_login(request, device)
            signed_in_message(request)
            if not mfa.recovery_codes_left(user=request.user):
                request.session["recovery_codes"] = mfa.recovery_codes_issue(user=request.user)
                return redirect("otp_recovery_codes")
            messages.success(request, _("Your authenticator app is set up."))
            return redirect(_next_url(request))
        form.add_error("token", _("That code did not match. Scan the code again or wait for the next code."))
    qr = segno.make(device.config_url, error="m")
    return render(
        request,
        "account/otp_setup.html",
        {
            "form": form,
            "qr_svg": qr.svg_inline(scale=5, dark="#10243e"),
            "secret": device.config_url.split("secret=")[1].split("&")[0],
            "next": _next_url(request, ""),
        },
    )


@require_safe
def otp_recovery_codes(request):
    """Recovery codes, shown once, right after they are issued."""
    codes = request.session.pop("recovery_codes", None)
    if not codes:
        return redirect("otp_devices")
    return render(request, "account/otp_recovery_codes.html", {"codes": codes})


@require_safe
def otp_devices(request):
    devices = mfa.device_list(user=request.user)
    for device in devices:
        device.kind = mfa.device_kind(device)
        device.display_name = mfa.device_name(device)
    return render(
        request,
        "account/otp_devices.html",
        {
            "devices": devices,
            "recovery_left": mfa.recovery_codes_left(user=request.user),
            "passkey_name_max_length": mfa.PASSKEY_NAME_MAX_LENGTH,
        },
    )


# Passkeys: django-otp-webauthn's JSON endpoints (static/js/passkeys.js drives them), with accounts.mfa's helper
# and audit events. Their access rules are in urls.py: adding a passkey needs a verified staff member (the default),
# using one as the second factor only a signed-in user (signed_in), like the code page.
class PasskeyRegistrationBeginView(webauthn_views.BeginCredentialRegistrationView):
    def get_helper(self):
        return mfa.PasskeyHelper(request=self.request)


class PasskeyRegistrationCompleteView(webauthn_views.CompleteCredentialRegistrationView):
    """Saves the passkey under the name typed on the devices page, audited (mfa.PasskeyHelper)."""

    def get_helper(self):
        return mfa.PasskeyHelper(request=self.request)

    def post(self, *args, **kwargs):
        response = super().post(*args, **kwargs)
        messages.success(self.request, _("Your passkey was added."))
        return response


class PasskeyVerifyBeginView(webauthn_views.BeginCredentialAuthenticationView):
    def get_helper(self):
        return mfa.PasskeyHelper(request=self.request)


class PasskeyVerifyCompleteView(webauthn_views.CompleteCredentialAuthenticationView):
    """The second factor by passkey. The package accepts only one of the signed-in user's own passkeys and marks the
    session verified; every outcome is audited as a code is (mfa.verified, mfa.verification_failed)."""

    def get_helper(self):
        return mfa.PasskeyHelper(request=self.request)

    def complete_auth(self, device):
        super().complete_auth(device)
        mfa.passkey_verified(user=self.request.user, device=device)
        # As a code at sign-in does (ADR 0024): the passkey just used spares the first step-up for a few minutes.
        reentry.stepup_grace_begin_at_sign_in(self.request.session, self.request.user)
        signed_in_message(self.request)

    def handle_exception(self, exc):
        if isinstance(exc, OTPWebAuthnApiError) and self.request.user.is_authenticated:
            mfa.passkey_verification_failed(user=self.request.user, reason=exc.code)
        return super().handle_exception(exc)


# The step-up by passkey (R-SEC-MFA): the same ceremony as the second factor at sign-in (the package's helper;
# py_webauthn checks origin, relying party, challenge, signature and sign count; only the signed-in user's own
# confirmed passkeys), but it leaves the login alone and grants one step-up instead (accounts.reentry), which the
# approve, send, schedule, cancel and export forms spend. Verified staff only (the default access rule): it confirms
# an action, not a sign-in.
class PasskeyStepUpBeginView(webauthn_views.BeginCredentialAuthenticationView):
    """The assertion options, allowCredentials = the user's own passkeys; the challenge kept apart from sign-in's."""

    def get_helper(self):
        return mfa.PasskeyHelper(request=self.request)

    def post(self, *args, **kwargs):
        user = self.request.user
        if not mfa.passkey_exists(user=user):
            return JsonResponse(
                {"detail": "Your account has no passkey. Enter a code instead.", "code": "no_passkey"}, status=400
            )
        options, state = self.get_helper().authenticate_begin(user=user, require_user_verification=False)
        self.request.session[mfa.PASSKEY_STEPUP_STATE_KEY] = state
        return JsonResponse(options)


class PasskeyStepUpCompleteView(webauthn_views.CompleteCredentialAuthenticationView):
    """Verifies the assertion and answers {"nonce": ...}. Every refusal is a 4xx JSON answer, audited as
    mfa.reentry_failed {"for": "passkey"}; never a server error, whatever the browser sent."""

    def get_helper(self):
        return mfa.PasskeyHelper(request=self.request)

    def get_state(self):
        # Popped and saved before anything else, as the package does for sign-in: a challenge is used once.
        state = self.request.session.pop(mfa.PASSKEY_STEPUP_STATE_KEY, None)
        self.request.session.save()
        if not state:
            raise webauthn_exceptions.InvalidState()
        return state

    def complete_auth(self, device):
        # No otp_login: the session keeps the second factor it signed in with.
        self.nonce = mfa.passkey_stepup_granted(session=self.request.session, user=self.request.user)

    def get_success_data(self, device):
        return {"nonce": self.nonce}

    def handle_exception(self, exc):
        if not isinstance(exc, OTPWebAuthnApiError) or exc.status_code >= 500:
            logger.warning("passkey step-up refused: %s", type(exc).__name__)
            exc = webauthn_exceptions.UnprocessableEntity(
                detail="The passkey's answer could not be checked.", code="unreadable_answer"
            )
        if self.request.user.is_authenticated:
            mfa.passkey_stepup_failed(user=self.request.user)
        return super().handle_exception(exc)


@require_POST
def otp_device_remove(request):
    try:
        removed = mfa.device_remove(user=request.user, persistent_id=request.POST.get("device", ""))
    except mfa.DeviceRemovalRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("otp_devices")
    if removed:
        messages.success(request, _("The device was removed."))
    else:
        messages.error(request, _("No such device on your account."))
    return redirect("otp_devices")


@require_POST
def otp_recovery_codes_regenerate(request):
    request.session["recovery_codes"] = mfa.recovery_codes_issue(user=request.user)
    return redirect("otp_recovery_codes")
