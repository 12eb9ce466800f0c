"""Suppressions (hard bounce, complaint): an address that must not receive mail again, recorded once, audited."""
from audit import actions
from audit.services import audit_record
from consent import crypto
from consent.models import Suppression


def suppression_record(*, actor, email: str, reason: str, smtp_code: str = "") -> Suppression:
    """Suppress an address for every later marketing message (R-BOUNCE-SUPPRESS). Runs inside the caller's
    transaction (the sender records a hard bounce with the delivery's outcome); suppressing twice keeps the
    first record."""
    suppression, created = Suppression.objects.get_or_create(
        email_digest=crypto.lookup_digest(email),
        defaults={"reason": reason, "smtp_code": smtp_code[:10], "recorded_by": actor},
    )
    if created:
        audit_record(
            actor=actor,
            actor_role="" if actor else actions.SYSTEM,
            action=actions.SUPPRESSION_RECORDED,
            object_type="suppression",
            object_id=suppression.pk,
            details={"reason": reason, "smtp_code": smtp_code[:10]},
        )
    return suppression
