"""The second factor of staff accounts (R-SEC-MFA), on django-otp's devices, the only MFA store.

TOTP authenticators are enrolled with a QR code; ten static recovery codes are shown once. Every event is
audited, failures included.
"""
import secrets

from django.db import transaction
from django_otp import devices_for_user, match_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.services import audit_record

RECOVERY_CODE_COUNT = 10


def totp_device_pending(*, user) -> TOTPDevice:
    """The authenticator being enrolled: an unconfirmed device, created on first use."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
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
            action="mfa.device_enrolled" if ok else "mfa.enrollment_failed",
            object_type="otp_device",
            object_id=device.persistent_id,
        )
    return ok


def otp_verify(*, user, token: str):
    """Check a code from any of the user's devices; the matching device, or None. Devices throttle."""
    device = match_token(user, token.strip().replace(" ", ""))
    audit_record(
        actor=user,
        action="mfa.verified" if device else "mfa.verification_failed",
        object_type="otp_device" if device else "user",
        object_id=device.persistent_id if device else user.pk,
    )
    return device


def recovery_codes_issue(*, user) -> list[str]:
    """Replace the user's recovery codes with ten new ones and return them, to be shown once."""
    with transaction.atomic():
        device, _ = StaticDevice.objects.get_or_create(user=user, name="Recovery codes", defaults={"confirmed": True})
        device.token_set.all().delete()
        codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODE_COUNT)]
        StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
        audit_record(
            actor=user, action="mfa.recovery_codes_issued", object_type="otp_device", object_id=device.persistent_id
        )
    return codes


def device_list(*, user) -> list:
    return list(devices_for_user(user, confirmed=True))


def device_remove(*, user, persistent_id: str) -> bool:
    """Remove one of the user's own devices. Returns False when no such device is theirs."""
    for device in devices_for_user(user, confirmed=None):
        if device.persistent_id == persistent_id:
            with transaction.atomic():
                device.delete()
                audit_record(
                    actor=user, action="mfa.device_removed", object_type="otp_device", object_id=persistent_id
                )
            return True
    return False


def recovery_codes_left(*, user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()
