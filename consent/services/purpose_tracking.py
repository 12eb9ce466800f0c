"""The purpose's opt-in tracking switch (Purpose.tracking_enabled, off by default).

Turned on, campaigns of the purpose count the first open (images loaded) and the first click of each message,
shown to marketers in aggregate only (campaigns.results, campaigns.tracking). A switch of its own, audited on its
own, so that the trail says who turned tracking on or off and when."""
from django.db import transaction

from audit.services import audit_record
from consent.models import Purpose


def purpose_tracking_set(*, actor, purpose_id: int, enabled: bool) -> Purpose:
    """Turn open and click tracking on or off for a purpose; setting it to what it is changes and audits nothing.
    Messages already sent keep what they were sent with; the next batch of a campaign follows the switch."""
    with transaction.atomic():
        purpose = Purpose.objects.select_for_update().get(pk=purpose_id)
        if purpose.tracking_enabled == enabled:
            return purpose
        purpose.tracking_enabled = enabled
        purpose.save(update_fields=["tracking_enabled"])
        audit_record(
            actor=actor,
            action="purpose.tracking_changed",
            object_type="purpose",
            object_id=purpose.pk,
            details={"tracking_enabled": enabled},
        )
    return purpose
