"""Outgoing webhooks (Standard Webhooks, issue 13): a CRM learns what the patient decided.

**Webhooks follow the audit trail.** The domain apps (consent, campaigns) never import the API (import-linter's
layers contract), and they need not: every change we report is already recorded by `audit.services.audit_record`
in the same transaction as the change, as an AuditEvent saved with `.save()`. `connect()` (called by
api.apps.ApiConfig.ready) connects a `post_save` receiver on AuditEvent that, for the actions in EVENT_OF_ACTION,
writes one WebhookDelivery per matching active subscription of a usable key (not revoked, not expired), **inside
that same transaction**: a transactional outbox. A change that commits has its deliveries committed with it (none
lost); a change that rolls back takes its deliveries with it (none sent for what did not happen). After the commit,
`transaction.on_commit` wakes a worker for each (api.tasks); a beat job (api.periodic) wakes any that are due, so a
lost task or a broker outage only delays. The sender (api.webhook_delivery) signs, posts and retries.

The receiver costs one cheap query when nobody subscribes (the subscriptions of usable keys: a handful of rows),
and none at all for the actions it does not report.

| audit action | webhook event | data |
|---|---|---|
| authorization.granted | authorization.signed | authorization_id, patient_id, purpose (code), channel |
| authorization.revoked | authorization.revoked | patient_id, purpose, authorization_ids, channel |
| delivery.bounced | delivery.bounced | delivery_id, patient_id, campaign_id, kind, status |
| suppression.recorded | suppression.added | suppression_id, reason, patient_ids (patients with that address) |

Payload: `{"type", "timestamp" (the event's time, ISO 8601), "data": {...}}`: ids and codes only, never a name, an
address or an email (R-NO-PHI-LEAK). The receiver asks us (the API, with its key's scopes) for anything more.

Also here: the services of the administrators' pages (create a subscription, its secret shown once; delete one;
retry a failed delivery now), each audited.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC
from functools import partial

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.db.models.signals import post_save
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from api.models import ApiKey, WebhookDelivery, WebhookSubscription
from api.tasks import webhook_delivery_enqueue
from api.webhook_delivery import secret_generate, url_refusal
from audit import actions
from audit.models import AuditEvent
from audit.services import audit_record
from consent import crypto
from consent.models import Patient, Purpose, Suppression

AUTHORIZATION_SIGNED = "authorization.signed"
AUTHORIZATION_REVOKED = "authorization.revoked"
DELIVERY_BOUNCED = "delivery.bounced"
SUPPRESSION_ADDED = "suppression.added"

# What a subscriber may choose, with the plain description the form shows.
EVENT_TYPES = {
    AUTHORIZATION_SIGNED: gettext_lazy("A patient signed an authorization (or a consent to email) for a purpose."),
    AUTHORIZATION_REVOKED: gettext_lazy("A patient revoked their authorization for a purpose (portal, one-click link or letter)."),
    DELIVERY_BOUNCED: gettext_lazy("A message to a patient bounced (a hard or soft bounce reported by the mail server)."),
    SUPPRESSION_ADDED: gettext_lazy("An address was suppressed for all marketing mail (hard bounce, complaint or staff)."),
}

EVENT_OF_ACTION = {
    actions.AUTHORIZATION_GRANTED: AUTHORIZATION_SIGNED,
    actions.AUTHORIZATION_REVOKED: AUTHORIZATION_REVOKED,
    actions.DELIVERY_BOUNCED: DELIVERY_BOUNCED,
    actions.SUPPRESSION_RECORDED: SUPPRESSION_ADDED,
}


# --- The outbox: audit events become deliveries -----------------------------------------------------------


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _data_of(event_type: str, event: AuditEvent) -> dict:
    """The event's data: ids and codes taken from the audit event (whose details are codes by construction) and,
    where the audit names an id we report as a code or a set, from the domain's rows."""
    details = event.details or {}
    if event_type == AUTHORIZATION_SIGNED:
        return {
            "authorization_id": _int(event.object_id),
            "patient_id": event.patient_id,
            "purpose": details.get("purpose"),
            "channel": details.get("channel"),
        }
    if event_type == AUTHORIZATION_REVOKED:
        purpose_id = details.get("purpose_id")
        return {
            "patient_id": event.patient_id,
            "purpose": Purpose.objects.filter(pk=purpose_id).values_list("code", flat=True).first(),
            "authorization_ids": list(details.get("authorization_ids") or []),
            "channel": details.get("channel"),
        }
    if event_type == DELIVERY_BOUNCED:
        return {
            "delivery_id": _int(event.object_id),
            "patient_id": event.patient_id,
            "campaign_id": details.get("campaign_id"),
            "kind": details.get("kind"),
            "status": details.get("status") or None,
        }
    if event_type == SUPPRESSION_ADDED:
        suppression = Suppression.objects.filter(pk=_int(event.object_id)).values_list("email_digest", flat=True)
        digest = suppression.first()
        patient_ids = (
            sorted(Patient.objects.filter(email_digest=digest).values_list("id", flat=True)) if digest else []
        )
        return {"suppression_id": _int(event.object_id), "reason": details.get("reason"), "patient_ids": patient_ids}
    raise ValueError(f"{event_type!r} is not a webhook event type")


def payload_build(event_type: str, event: AuditEvent) -> dict:
    occurred_at = event.occurred_at if hasattr(event.occurred_at, "isoformat") else timezone.now()
    return {
        "type": event_type,
        "timestamp": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": _data_of(event_type, event),
    }


def subscriptions_usable():
    """Active subscriptions of keys that are neither revoked nor expired (in the database's clock)."""
    return WebhookSubscription.objects.filter(active=True, api_key__revoked_at__isnull=True).filter(
        Q(api_key__expires_at__isnull=True) | Q(api_key__expires_at__gt=Now())
    )


def message_id_new() -> str:
    return f"msg_{uuid.uuid4().hex}"


def webhook_deliveries_create(*, event: AuditEvent) -> list[WebhookDelivery]:
    """The outbox rows for one audit event, in the caller's transaction, and a wake-up for each after its commit.
    Returns the deliveries created (none when the action is not reported or nobody subscribes)."""
    event_type = EVENT_OF_ACTION.get(event.action)
    if event_type is None:
        return []
    # event_types is a short JSON list; filtering it here rather than in SQL keeps SQLite (the demo) working.
    subscription_ids = [
        subscription_id
        for subscription_id, event_types in subscriptions_usable().values_list("id", "event_types")
        if event_type in (event_types or [])
    ]
    if not subscription_ids:
        return []
    payload = payload_build(event_type, event)
    # The caller's transaction (no savepoint: if the outbox cannot be written, the change fails with it); a
    # transaction of its own when the caller has none.
    with transaction.atomic(savepoint=False):
        deliveries = WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    subscription_id=subscription_id,
                    message_id=message_id_new(),
                    event_type=event_type,
                    payload=payload,
                )
                for subscription_id in sorted(subscription_ids)
            ]
        )
        for delivery in deliveries:
            transaction.on_commit(partial(webhook_delivery_enqueue, delivery.pk))
    return deliveries


def _audit_event_saved(sender, instance: AuditEvent, created: bool, raw: bool = False, **kwargs) -> None:
    if not created or raw or instance.action not in EVENT_OF_ACTION:
        return
    webhook_deliveries_create(event=instance)


def connect() -> None:
    """Connect the audit trail to the webhook outbox (api.apps.ApiConfig.ready)."""
    post_save.connect(_audit_event_saved, sender=AuditEvent, dispatch_uid="api.webhooks.audit_event_saved")


# --- Subscriptions: the administrators' services ----------------------------------------------------------


@dataclass(frozen=True)
class CreatedSubscription:
    subscription: WebhookSubscription
    secret: str  # shown once; stored only encrypted


def _key_usable(key: ApiKey) -> bool:
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > timezone.now())


def webhook_subscription_create(
    *, actor, api_key_id: int, url: str, event_types: list[str]
) -> CreatedSubscription:
    """Subscribe `url` to these event types for a usable key. The returned secret is the only plain copy."""
    url = (url or "").strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ValidationError(
            _("Enter the receiver's full address, e.g. https://crm.example.org/hooks/hipaamail."), code="bad_url"
        ) from None
    refusal = url_refusal(url)
    if refusal:
        raise ValidationError(refusal, code="url_refused")
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown or not event_types:
        raise ValidationError(_("Choose at least one event from the list."), code="bad_event_types")
    secret = secret_generate()
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=api_key_id)
        if not _key_usable(key):
            raise ValidationError(_("This key is revoked or expired: it cannot receive webhooks."), code="key_unusable")
        subscription = WebhookSubscription(
            api_key=key,
            url=url,
            event_types=sorted(set(event_types)),
            secret=crypto.encrypt(secret),
            created_by=actor,
        )
        subscription.full_clean()
        subscription.save(force_insert=True)
        audit_record(
            actor=actor,
            action=actions.WEBHOOK_SUBSCRIPTION_CREATED,
            object_type="webhook_subscription",
            object_id=subscription.pk,
            details={"api_key_id": key.pk, "event_types": subscription.event_types},
        )
    return CreatedSubscription(subscription=subscription, secret=secret)


def webhook_subscription_delete(*, actor, subscription_id: int) -> None:
    """Delete a subscription and its delivery log; pending deliveries are dropped, never sent."""
    with transaction.atomic():
        subscription = WebhookSubscription.objects.select_for_update().get(pk=subscription_id)
        pending = subscription.deliveries.filter(status=WebhookDelivery.Status.PENDING).count()
        api_key_id = subscription.api_key_id
        subscription.delete()
        audit_record(
            actor=actor,
            action=actions.WEBHOOK_SUBSCRIPTION_DELETED,
            object_type="webhook_subscription",
            object_id=subscription_id,
            details={"api_key_id": api_key_id, "pending_dropped": pending},
        )


def webhook_delivery_retry(*, actor, delivery_id: int) -> WebhookDelivery:
    """Give a failed delivery one more attempt, now (the same webhook-id, so the receiver can deduplicate). If it
    fails again it is failed again, with its audit event. Refused for a delivery that has not failed."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("subscription").get(pk=delivery_id)
        if delivery.status != WebhookDelivery.Status.FAILED:
            raise ValidationError(_("Only a failed delivery can be retried."), code="not_failed")
        if not delivery.subscription.active:
            raise ValidationError(_("The subscription is no longer active."), code="inactive")
        delivery.status = WebhookDelivery.Status.PENDING
        delivery.next_attempt_at = Now()  # the database's clock, which the claim compares with
        delivery.claimed_until = None
        delivery.save(update_fields=["status", "next_attempt_at", "claimed_until"])
        audit_record(
            actor=actor,
            action=actions.WEBHOOK_DELIVERY_RETRIED,
            object_type="webhook_delivery",
            object_id=delivery.pk,
            details={"subscription_id": delivery.subscription_id, "attempts": delivery.attempts},
        )
        transaction.on_commit(partial(webhook_delivery_enqueue, delivery.pk))
    return delivery
