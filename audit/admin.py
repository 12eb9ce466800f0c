"""The Django admin changes no domain state (issue 11, item 6, "no back doors").

Audit events are not registered: the audit pages (audit.views) show them to the audit readers only, with their
filters and keyset pagination, and an admin list would count and page the whole table. Checkpoints have no page
of their own, so they are shown here, read-only; they hold sequences, hashes and signatures, never PHI."""
from django.contrib import admin

from audit.models import AuditCheckpoint


class ReadOnlyAdmin(admin.ModelAdmin):
    """Domain state in the admin: look, never touch. No add, change or delete (so every field is read-only and
    a POST answers 403), and no actions (a bulk action is a change too). The other apps' admins build on it."""

    actions = None

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "sequence", "key_id")
