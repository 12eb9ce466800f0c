"""The staff second factor in the Django admin: an administrator manages staff members' devices (renames one,
removes a lost one, resets its throttle) but never sees a device's secret (R-SEC-MFA).

django-otp's own admins show a TOTP device's key and its QR code (unless OTP_ADMIN_HIDE_SENSITIVE_DATA), offer to
add a device (the add form shows the new key) and list a recovery-code device's codes; whoever reads one can pass
that staff member's second factor. These replace them, whatever the setting says. A device cannot be moved to
another user either: with the user's password, that would be someone else's second factor. Staff members enrol
their own devices on their own pages (hipaamail.views.otp_setup, passkeys)."""
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django_otp.plugins.otp_static.admin import StaticDeviceAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

_SECRETS = {"key", "qrcode_link"}


class TOTPDeviceWithoutSecretAdmin(TOTPDeviceAdmin):
    readonly_fields = ("user", "created_at", "last_used_at")

    def get_list_display(self, request):
        return [name for name in super().get_list_display(request) if name not in _SECRETS]

    def get_fieldsets(self, request, obj=None):
        return [
            (title, {**options, "fields": [name for name in options["fields"] if name not in _SECRETS]})
            for title, options in super().get_fieldsets(request, obj)
        ]

    def has_add_permission(self, request):
        return False

    def config_view(self, request, pk):
        raise PermissionDenied

    def qrcode_view(self, request, pk):
        raise PermissionDenied


class StaticDeviceWithoutTokensAdmin(StaticDeviceAdmin):
    readonly_fields = ("user", "created_at", "last_used_at")
    inlines = ()

    def get_inline_instances(self, request, obj=None):
        return []

    def has_add_permission(self, request):
        return False


for model, model_admin in ((TOTPDevice, TOTPDeviceWithoutSecretAdmin), (StaticDevice, StaticDeviceWithoutTokensAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
