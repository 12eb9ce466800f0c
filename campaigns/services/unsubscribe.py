"""One-click unsubscribe (R-RFC8058): the delivery's signed token names the patient and purpose; the authorization
for that purpose is revoked at once, audited."""
from campaigns.models import Delivery
from consent.models import Revocation
from consent.services.authorizations import authorization_revoke


def delivery_unsubscribe(*, delivery_id: int) -> list[Revocation]:
    """One-click unsubscribe (R-RFC8058, R-CANSPAM-OPTOUT): revoke the authorization for the purpose of the
    campaign this delivery belongs to, at once. The consent service audits it; doing it twice is harmless."""
    delivery = Delivery.objects.select_related("campaign").get(pk=delivery_id)
    return authorization_revoke(
        actor=None,
        patient_id=delivery.patient_id,
        purpose_id=delivery.campaign.purpose_id,
        channel=Revocation.Channel.ONE_CLICK,
    )
