from django.contrib import admin

from audit.models import AuditCheckpoint, AuditEvent


class _ReadOnly(admin.ModelAdmin):
    """Read-only: the database refuses changes anyway."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(_ReadOnly):
    list_display = ("id", "sequence", "occurred_at", "actor", "actor_role", "action", "object_type", "object_id",
                    "patient_id")
    list_filter = ("action", "actor_role")
    readonly_fields = [f.name for f in AuditEvent._meta.fields]


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(_ReadOnly):
    list_display = ("id", "created_at", "sequence", "key_id")
    readonly_fields = [f.name for f in AuditCheckpoint._meta.fields]
