"""The staff second factor in the Django admin: an administrator manages staff members' devices (renames one,
removes a lost one, resets its throttle) but never sees a device's secret (R-SEC-MFA).

django-otp's own admins show a TOTP device's key and its QR code (unless OTP_ADMIN_HIDE_SENSITIVE_DATA), offer to
add a device (the add form shows the new key) and list a recovery-code device's codes; whoever reads one can pass
that staff member's second factor. These replace them, whatever the setting says. A device cannot be moved to
another user either: with the user's password, that would be someone else's second factor. Staff members enrol
their own devices on their own pages (accounts.views.otp_setup, passkeys)."""
import re

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django_otp.plugins.otp_static.admin import StaticDeviceAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import actions
from audit.services import audit_record

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


# --- Account changes made in the admin are on the audit trail (R-SEC-AUDIT, R-SEC-UNIQUE-ID) ------------------
# Roles are groups, so adding a staff member to "compliance officer", making one a superuser, setting a password
# or removing a second factor here changes who may see patient data. Django records it only in its own
# django_admin_log, which anyone with the database can rewrite; each change is also written to the hash-chained
# trail, in the admin's own transaction, with the changed fields' names only (never their values).


def _changed_fields(message) -> list[str]:
    """The field names in an admin change message ([{"changed": {"fields": [...]}}, ...]) or a plain string."""
    if not isinstance(message, list):
        return []
    names: list[str] = []
    for entry in message:
        for verb in ("added", "changed", "deleted"):
            details = entry.get(verb) if isinstance(entry, dict) else None
            if isinstance(details, dict):
                names += [str(name) for name in details.get("fields", [])]
                if details.get("name"):
                    names.append(str(details["name"]))
    # As audit codes ("Staff status" -> staff_status): details hold ids and codes only.
    return sorted({re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:64] for name in names})


class AuditedAccountAdmin(admin.ModelAdmin):
    """Mixin for the account models' admins: every add, change and delete is audited as `account.admin_*`."""

    def _audit(self, request, obj_id, action: str, fields: list[str]) -> None:
        audit_record(
            actor=request.user,
            action=actions.ACCOUNT_ADMIN_ACTIONS[action],
            object_type=self.model._meta.label_lower,
            object_id=obj_id,
            details={"fields": fields} if fields else {},
        )

    def log_addition(self, request, obj, message):
        entry = super().log_addition(request, obj, message)
        self._audit(request, obj.pk, "added", _changed_fields(message))
        return entry

    def log_change(self, request, obj, message):
        entry = super().log_change(request, obj, message)
        self._audit(request, obj.pk, "changed", _changed_fields(message))
        return entry

    def log_deletions(self, request, queryset):
        ids = [obj.pk for obj in queryset]  # a queryset, or the admin's delete view's [obj]
        entries = super().log_deletions(request, queryset)
        for pk in ids:
            self._audit(request, pk, "deleted", [])
        return entries


def _audited(model) -> None:
    """Re-register `model`'s admin with AuditedAccountAdmin mixed in front of it."""
    if not admin.site.is_registered(model):
        return
    current = type(admin.site._registry[model])
    admin.site.unregister(model)
    admin.site.register(model, type(f"Audited{current.__name__}", (AuditedAccountAdmin, current), {}))


def _account_models():
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.sites.models import Site

    return (get_user_model(), Group, EmailAddress, Site, TOTPDevice, StaticDevice)


for _model in _account_models():
    _audited(_model)
