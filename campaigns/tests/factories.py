"""Campaign test data through the real services: draft, submitted by its author, approved by another; content
library items written and approved by a compliance officer."""

import itertools

from accounts.tests.factories import staff_make
from campaigns.services import library as services_content
from campaigns.services.lifecycle import campaign_approve, campaign_create, campaign_submit

_serial = itertools.count(1)


def campaign_make(*, purpose, author=None, **overrides):
    n = next(_serial)
    author = author or staff_make(role="marketer")
    fields = {"name": f"Campaign {n}", "subject": "News for you", "body_text": "Hello from Riverside Health."}
    fields |= overrides
    return campaign_create(actor=author, purpose=purpose, **fields)


def campaign_approved_make(*, purpose, **overrides):
    campaign = campaign_make(purpose=purpose, **overrides)
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    approver = staff_make(role="compliance officer")
    return campaign_approve(actor=approver, campaign_id=campaign.pk)


def block_make(*, html="<p>Fresh CPAP cushions are in stock.</p>", name=None, approved=True, officer=None, purposes=()):
    """`purposes`: those it may be used with (none: every purpose)."""
    officer = officer or staff_make(role="compliance officer")
    block = services_content.content_block_create(
        actor=officer, name=name or f"Block {next(_serial)}", html=html, purposes=purposes
    )
    if approved:
        block = services_content.library_item_approve(actor=officer, kind="block", item_id=block.pk)
    return block


def template_make(
    *,
    header_html="<h1>Riverside Health</h1>",
    footer_html="<p>Call us: 555-0100</p>",
    css="",
    name=None,
    approved=True,
    officer=None,
):
    officer = officer or staff_make(role="compliance officer")
    template = services_content.email_template_create(
        actor=officer,
        name=name or f"Template {next(_serial)}",
        header_html=header_html,
        footer_html=footer_html,
        css=css,
    )
    if approved:
        template = services_content.library_item_approve(actor=officer, kind="template", item_id=template.pk)
    return template
