"""The append-only, hash-chained audit trail (R-SEC-AUDIT, R-SEC-INTEGRITY).

The database refuses UPDATE, DELETE and TRUNCATE on it (migrations 0002 and 0004). An event is inserted
unsealed; the sealer (audit.services.audit_seal) then gives it, exactly once, its place in the chain: a
gap-free `sequence`, the previous event's hash and its own. That one NULL-to-value change of the three chain
columns is the only UPDATE the trigger lets through (docs/adr/0004-audit-hash-chain.md).
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class AuditEvent(models.Model):
    """One state change or one access to PHI. `details` holds ids and codes, never PHI."""

    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField(db_default=models.functions.Now())
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # the (actor, occurred_at, id) index below serves the lookups
    )
    # The actor's role at the time (a group name) or "system", "patient", "anonymous".
    actor_role = models.CharField(max_length=40)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=40, blank=True)
    # The patient the event concerns, when it concerns one (an id, never an identifier): a patient's whole
    # history is one index range. A plain integer, not a foreign key: the audit app depends on no other app.
    patient_id = models.BigIntegerField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=36, blank=True)
    # The chain, written once by the sealer after the event's transaction committed (NULL until then).
    sequence = models.BigIntegerField(null=True, blank=True, unique=True)
    prev_hash = models.CharField(max_length=64, null=True, blank=True)
    hash = models.CharField(max_length=64, null=True, blank=True)

    class Meta:
        ordering = ["id"]
        # Pages are read newest first by (occurred_at, id) with keyset pagination; each filter has an index
        # that ends in (occurred_at, id), so any single filter, and any filter with a date range, is one range
        # scan of its index however deep the page (bench/audit_scale.py).
        indexes = [
            models.Index(fields=["occurred_at", "id"], name="audit_event_time_idx"),
            models.Index(fields=["actor", "occurred_at", "id"], name="audit_event_actor_idx"),
            models.Index(fields=["action", "occurred_at", "id"], name="audit_event_action_idx"),
            models.Index(fields=["patient_id", "occurred_at", "id"], name="audit_event_patient_idx"),
            models.Index(fields=["object_type", "object_id", "occurred_at", "id"], name="audit_event_object_idx"),
            # What the sealer has still to chain: a handful of rows at any time.
            models.Index(fields=["id"], condition=Q(sequence__isnull=True), name="audit_event_unsealed_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.action} {self.object_type}:{self.object_id}"


class AuditCheckpoint(models.Model):
    """A signed statement "the chain had `sequence` events and ended in `head_hash`" (audit_checkpoint).

    The signature is an HMAC-SHA256 with a key kept outside the database (audit.checkpoints), so whoever can
    rewrite the tables cannot forge one; a later audit_verify that finds the chain shorter than a checkpoint,
    or a different hash at its sequence, reports the cut. Append-only like the events (migration 0004).

    An *archive floor* is the same statement signed for another purpose: "events up to `sequence` were archived
    outside the database (docs/retention.md); the live chain continues from `head_hash`". Only someone holding
    the key can sign one, so a verify may start after it without letting a deleted prefix pass unnoticed.
    """

    class Kind(models.TextChoices):
        HEAD = "head", _("Chain head")
        ARCHIVE_FLOOR = "archive_floor", _("Archived through")

    id = models.BigAutoField(primary_key=True)
    # A database default, so adding the column is an ALTER TABLE … ADD COLUMN on SQLite too (no table rebuild,
    # which would drop the append-only triggers) and existing rows read "head".
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.HEAD, db_default=Kind.HEAD)
    created_at = models.DateTimeField()
    sequence = models.BigIntegerField()
    head_hash = models.CharField(max_length=64)
    key_id = models.CharField(max_length=32)
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        if self.kind == self.Kind.ARCHIVE_FLOOR:
            return f"archive floor #{self.id} through sequence {self.sequence}"
        return f"checkpoint #{self.id} at sequence {self.sequence}"
