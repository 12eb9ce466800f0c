"""Writing the audit trail. Callers write the event in the same transaction as the change it records."""
import re
from typing import Any

from django.core.exceptions import ValidationError

from audit import context
from audit.models import AuditEvent

SYSTEM = "system"
PATIENT = "patient"
ANONYMOUS = "anonymous"

# Details hold ids, counts and codes. Free text (names, addresses, emails) cannot pass this shape,
# which keeps PHI out of the audit trail by construction (R-NO-PHI-LEAK).
_CODE = re.compile(r"^[A-Za-z0-9_.:/\-]{0,64}$")


def _check_detail_value(key: str, value: Any) -> None:
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str) and _CODE.match(value):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_detail_value(key, item)
        return
    if isinstance(value, dict):
        _check_details(value)
        return
    raise ValidationError(f"Audit detail {key!r} must be an id, a count or a code.")


def _check_details(details: dict[str, Any]) -> None:
    for key, value in details.items():
        if not _CODE.match(str(key)):
            raise ValidationError("Audit detail keys must be codes.")
        _check_detail_value(key, value)


def role_of(user) -> str:
    """The role a user acts in: their group (marketer, compliance officer, administrator), else a kind."""
    if user is None or not getattr(user, "is_authenticated", False):
        return SYSTEM if user is None else ANONYMOUS
    names = sorted(user.groups.values_list("name", flat=True))
    if names:
        return ",".join(names)[:40]
    return "superuser" if user.is_superuser else "user"


def audit_record(
    *,
    actor=None,
    actor_role: str = "",
    action: str,
    object_type: str = "",
    object_id: object = "",
    details: dict[str, Any] | None = None,
    ip: str | None = None,
    request_id: str = "",
) -> AuditEvent:
    """Append one event. `actor` is a user or None (then say system, patient or anonymous in actor_role)."""
    details = details or {}
    if not actor_role:
        actor_role = role_of(actor)
    request = context.current()
    _check_details(details)
    event = AuditEvent(
        actor=actor if actor is not None and getattr(actor, "pk", None) else None,
        actor_role=actor_role,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        details=details,
        ip=ip or request.ip,
        request_id=request_id or request.request_id,
    )
    event.full_clean(exclude=["actor", "occurred_at"])
    event.save(force_insert=True)
    return event
