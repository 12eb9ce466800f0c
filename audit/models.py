"""The append-only audit trail. The database refuses UPDATE and DELETE on it (migration 0002)."""
from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One state change or one access to PHI. `details` holds ids and codes, never PHI."""

    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField(db_default=models.functions.Now())
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The actor's role at the time (a group name) or "system", "patient", "anonymous".
    actor_role = models.CharField(max_length=40)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=40, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=36, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"#{self.id} {self.action} {self.object_type}:{self.object_id}"
