"""Campaign test data through the real services: draft, submitted by its author, approved by another."""
import itertools

from campaigns import services
from hipaamail.tests.factories import staff_make

_serial = itertools.count(1)


def campaign_make(*, purpose, author=None, **overrides):
    n = next(_serial)
    author = author or staff_make(role="marketer")
    fields = {"name": f"Campaign {n}", "subject": "News for you", "body_text": "Hello from Riverside Health."}
    fields |= overrides
    return services.campaign_create(actor=author, purpose=purpose, **fields)


def campaign_approved_make(*, purpose, **overrides):
    campaign = campaign_make(purpose=purpose, **overrides)
    services.campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    approver = staff_make(role="compliance officer")
    return services.campaign_approve(actor=approver, campaign_id=campaign.pk)
