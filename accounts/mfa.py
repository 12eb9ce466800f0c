"""The second factor of staff accounts (R-SEC-MFA), on django-otp's devices, the only MFA store.

TOTP authenticators are enrolled with a QR code; ten static recovery codes are shown once. Passkeys (WebAuthn,
django-otp-webauthn; py_webauthn checks the signatures) are added by a verified staff member and then stand in for
the code at sign-in and at the step-up before approving, sending, scheduling, cancelling or exporting
(accounts.reentry). Every event is audited, failures included.
"""
import re
import secrets

from django.db import transaction
from django.utils.translation import gettext as _
from django_otp import devices_for_user, match_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.helpers import WebAuthnHelper
from django_otp_webauthn.models import WebAuthnCredential

from accounts import reentry
from audit import actions
from audit.services import audit_record

RECOVERY_CODE_COUNT = 10
# The step-up ceremony's challenge, apart from the sign-in's ("otp_webauthn_authentication_state"), so that
# neither ceremony can complete the other.
PASSKEY_STEPUP_STATE_KEY = "hipaamail_passkey_stepup_state"
PASSKEY_NAME_MAX_LENGTH = 64  # django-otp's Device.name
PASSKEY_DEFAULT_NAME = "Passkey"
# The names the devices are stored under (in English: data), said in the reader's language by device_name.
AUTHENTICATOR_APP_NAME = "Authenticator app"
RECOVERY_CODES_NAME = "Recovery codes"


def totp_device_pending(*, user) -> TOTPDevice:
    """The authenticator being enrolled: an unconfirmed device, created on first use."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_APP_NAME, confirmed=False)
    return device


def totp_device_confirm(*, user, device: TOTPDevice, token: str) -> bool:
    """Confirm an enrollment with a first code from the app. Returns whether the code was right."""
    with transaction.atomic():
        ok = device.verify_token(token)
        if ok:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
        audit_record(
            actor=user,
            action=actions.MFA_DEVICE_ENROLLED if ok else actions.MFA_ENROLLMENT_FAILED,
            object_type="otp_device",
            object_id=device.persistent_id,
        )
    return ok


def otp_verify(*, user, token: str):
    """Check a code from any of the user's devices; the matching device, or None. Devices throttle."""
    device = match_token(user, token.strip().replace(" ", ""))
    audit_record(
        actor=user,
        action=actions.MFA_VERIFIED if device else actions.MFA_VERIFICATION_FAILED,
        object_type="otp_device" if device else "user",
        object_id=device_audit_id(device) if device else user.pk,
    )
    return device


def recovery_codes_issue(*, user) -> list[str]:
    """Replace the user's recovery codes with ten new ones and return them, to be shown once."""
    with transaction.atomic():
        device, _created = StaticDevice.objects.get_or_create(
            user=user, name=RECOVERY_CODES_NAME, defaults={"confirmed": True}
        )
        device.token_set.all().delete()
        codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODE_COUNT)]
        StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
        audit_record(
            actor=user, action=actions.MFA_RECOVERY_CODES_ISSUED, object_type="otp_device", object_id=device.persistent_id
        )
    return codes


def device_list(*, user) -> list:
    return list(devices_for_user(user, confirmed=True))


class DeviceRemovalRefused(Exception):
    """Removing this device would leave passkeys without an authenticator app (the message says why)."""


def device_remove(*, user, persistent_id: str) -> bool:
    """Remove one of the user's own devices. Returns False when no such device is theirs. Refuses
    (DeviceRemovalRefused) to remove the last authenticator app while passkeys remain: the app is the factor that
    works on any computer, where a passkey bound to one laptop or key may not be at hand (passkeys also pass the
    step-up before approving or exporting now, so the rule is a fallback, not a necessity: ADR 0009). Removing
    every device is allowed, as before: the next page then asks to set up an authenticator app."""
    devices = list(devices_for_user(user, confirmed=None))
    for device in devices:
        if device.persistent_id == persistent_id:
            apps = [other for other in devices if isinstance(other, TOTPDevice) and other.confirmed]
            passkeys = [other for other in devices if isinstance(other, WebAuthnCredential)]
            if isinstance(device, TOTPDevice) and apps == [device] and passkeys:
                raise DeviceRemovalRefused(
                    _("Keep one authenticator app beside your passkeys: its code works on any computer, where a "
                      "passkey may not be at hand. Add another app first, or remove your passkeys.")
                )
            audit_id = device_audit_id(device)  # before delete() clears the pk
            with transaction.atomic():
                device.delete()
                audit_record(actor=user, action=actions.MFA_DEVICE_REMOVED, object_type="otp_device", object_id=audit_id)
            return True
    return False


def recovery_codes_left(*, user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def device_audit_id(device) -> str:
    """The device's id in the audit trail: django-otp's persistent id, but short for a passkey (the package's
    "django_otp_webauthn.webauthncredential/<pk>" outgrows the audit's object_id column)."""
    if isinstance(device, WebAuthnCredential):
        return f"passkey/{device.pk}"
    return device.persistent_id


def device_kind(device) -> str:
    """What a device is, in the words of the devices page."""
    if isinstance(device, WebAuthnCredential):
        return _("Passkey")
    if isinstance(device, TOTPDevice):
        return _("Authenticator app")
    if isinstance(device, StaticDevice):
        return _("Recovery codes")
    return _("Device")


def device_name(device) -> str:
    """The device's name on the devices page: a name hipaamail gave it in the reader's language, one its owner
    typed as typed."""
    defaults = {
        AUTHENTICATOR_APP_NAME: _("Authenticator app"),
        RECOVERY_CODES_NAME: _("Recovery codes"),
        PASSKEY_DEFAULT_NAME: _("Passkey"),
    }
    return defaults.get(device.name, device.name)


def passkey_exists(*, user) -> bool:
    return WebAuthnCredential.objects.filter(user=user, confirmed=True).exists()


def passkey_name_clean(name) -> str:
    """The name its owner gave a passkey, on one line and within the column; a default when blank."""
    name = " ".join(str(name or "").split())[:PASSKEY_NAME_MAX_LENGTH]
    return name or PASSKEY_DEFAULT_NAME


class PasskeyHelper(WebAuthnHelper):
    """django-otp-webauthn's ceremonies (py_webauthn verifies attestations and signatures), with our rules on top:
    a new passkey is saved under the name its owner typed, and audited in the same transaction that saves it."""

    def create_credential(self, user, response, parsed_credential, original_data):
        device = super().create_credential(user, response, parsed_credential, original_data)
        device.name = passkey_name_clean(original_data.get("name") if isinstance(original_data, dict) else "")
        return device

    def register_complete(self, user, state: dict, data: dict):
        with transaction.atomic():
            device = super().register_complete(user=user, state=state, data=data)
            audit_record(
                actor=user,
                action=actions.MFA_DEVICE_ENROLLED,
                object_type="otp_device",
                object_id=device_audit_id(device),
                details={"kind": "passkey"},
            )
        return device


def passkey_verified(*, user, device: WebAuthnCredential) -> None:
    """A passkey passed as the second factor (the package has checked it and marked the session verified)."""
    audit_record(
        actor=user,
        action=actions.MFA_VERIFIED,
        object_type="otp_device",
        object_id=device_audit_id(device),
        details={"kind": "passkey"},
    )


def passkey_verification_failed(*, user, reason: str) -> None:
    """A passkey was refused at the second factor; `reason` is django-otp-webauthn's error code."""
    audit_record(
        actor=user,
        action=actions.MFA_VERIFICATION_FAILED,
        object_type="user",
        object_id=user.pk,
        details={"kind": "passkey", "reason": re.sub(r"[^a-z0-9_]", "", str(reason).lower())[:64]},
    )


def passkey_stepup_granted(*, session, user) -> str:
    """A passkey passed the step-up before approving, sending, scheduling, cancelling or exporting (R-SEC-MFA):
    one step-up for this user in this session (accounts.reentry); its nonce, for the page. The login and its
    second factor are left as they were. Not audited here: the action it confirms is."""
    return reentry.passkey_stepup_grant(session, user)


def passkey_stepup_failed(*, user) -> None:
    """A passkey was refused at a step-up: audited as a wrong code is there (mfa.reentry_failed)."""
    audit_record(
        actor=user, action=actions.MFA_REENTRY_FAILED, object_type="user", object_id=user.pk, details={"for": "passkey"}
    )
