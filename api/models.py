"""The integration API's own records: keys, idempotency records, webhook subscriptions and their delivery log.
Patients, authorizations and events stay in the domain apps; these rows name them by id only."""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class ApiKey(models.Model):
    """A key an administrator gave one external system. The secret is shown once; only its SHA-256 is kept.
    A key is not a user: audit events name it as `api_key:<id>`."""

    name = models.CharField(max_length=100)
    # Events posted with this key are unique per (source, event id): a system that rotates its key keeps its
    # source, so a retried event is still recognised.
    source = models.SlugField(max_length=50)
    prefix = models.CharField(max_length=16, unique=True)  # public part of the token, shown in lists
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    rate_limit_per_minute = models.PositiveIntegerField(default=600)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"API key #{self.pk} ({self.prefix})"


class IdempotencyRecord(models.Model):
    """The answer to one POST made with an Idempotency-Key, replayed when the same key and body come again
    (for 24 hours). The body is stored encrypted: an answer may carry a record number."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # null while the first call runs
    content_type = models.CharField(max_length=100, blank=True)
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique")]


class WebhookSubscription(models.Model):
    """Where to tell an external system what patients decided, for one key."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    event_types = models.JSONField(default=list)
    secret = models.TextField()  # "whsec_..." encrypted at rest (consent.crypto); needed to sign
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    def __str__(self) -> str:
        return f"Webhook #{self.pk}"


class WebhookDelivery(models.Model):
    """One event for one subscription, retried with back-off until the receiver answers 2xx or the attempts run
    out. Created in the transaction of the change it reports, so none is lost and none is sent for a change that
    rolled back."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed (attempts exhausted)")

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=40, unique=True)  # webhook-id: the receiver's deduplication key
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_default=models.functions.Now())
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(db_default=models.functions.Now())
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_delivery_due"),
            models.Index(fields=["subscription", "-created_at"], name="webhook_delivery_log"),
        ]
