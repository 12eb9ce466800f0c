"""API keys: create (the secret shown once, its SHA-256 kept), revoke, and find the key a token names.

A token reads `hm_<prefix>_<secret>`: the prefix finds the row (and is shown in lists and the audit trail), the
secret is 32 random bytes compared by hash in constant time. A key is usable until it is revoked or expires."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from api.models import ApiKey
from api.scopes import SCOPES
from audit import actions
from audit.services import audit_record

TOKEN_PREFIX = "hm"
# last_used_at is written at most this often per key: a busy key does not update its row on every call.
LAST_USED_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    token: str  # shown once, never stored


def api_key_secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(
    *,
    actor,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    source: str = "",
    rate_limit_per_minute: int = 600,
) -> IssuedKey:
    """Create a key for an external system; the returned token is the only copy of its secret."""
    name = name.strip()
    if not name:
        raise ValidationError(_("Name the system this key is for."), code="name_required")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValidationError(_("Choose at least one scope from the list."), code="bad_scopes")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError(_("The expiry must be in the future."), code="expiry_in_past")
    if not 1 <= rate_limit_per_minute <= 100_000:
        raise ValidationError(_("The rate limit is between 1 and 100,000 calls a minute."), code="bad_rate_limit")
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        source=slugify(source or name)[:50] or "integration",
        prefix=prefix,
        secret_hash=api_key_secret_digest(secret),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        rate_limit_per_minute=rate_limit_per_minute,
        created_by=actor,
    )
    key.full_clean()
    with transaction.atomic():
        key.save(force_insert=True)
        audit_record(
            actor=actor,
            action=actions.API_KEY_CREATED,
            object_type="api_key",
            object_id=key.pk,
            details={"scopes": key.scopes, "expires": bool(expires_at), "source": key.source},
        )
    return IssuedKey(key=key, token=f"{TOKEN_PREFIX}_{prefix}_{secret}")


def api_key_revoke(*, actor, api_key_id: int) -> ApiKey:
    """Revoke a key at once: the next call made with it is refused. Revoking twice keeps the first time."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=api_key_id)
        if key.revoked_at is None:
            key.revoked_at, key.revoked_by = timezone.now(), actor
            key.save(update_fields=["revoked_at", "revoked_by"])
            key.webhooks.update(active=False)
            audit_record(actor=actor, action=actions.API_KEY_REVOKED, object_type="api_key", object_id=key.pk)
    return key


def api_key_for_token(token: str) -> ApiKey | None:
    """The usable key this token names, or None (unknown, wrong secret, revoked or expired): the caller answers
    all four alike."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    key = ApiKey.objects.filter(prefix=parts[1]).first()
    if key is None or not hmac.compare_digest(key.secret_hash, api_key_secret_digest(parts[2])):
        return None
    now = timezone.now()
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def api_key_state(key: ApiKey) -> str:
    """"active", "expired" or "revoked", for the keys page."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= timezone.now():
        return "expired"
    return "active"
