"""Previews of campaign content with the synthetic patient (campaigns.content.SYNTHETIC_PATIENT): the editor's
live preview, the review page's content section, and the content library's item pages.

A preview is made by the same code as a patient's message (campaigns.sending.messages.CampaignRender and `assemble`),
so what staff see is what is sent, with made-up values in place of a patient's: no real patient's data is read.

For a page that shows a saved campaign (the review page): `{% include "campaigns/editor/_content_preview.html" %}`
with `campaign` in the context, or `{% load campaign_content %}{% content_preview campaign %}`; both render
templates/campaigns/editor/_content_preview_card.html with `content_preview_context(campaign=campaign)`.
"""

import html
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from campaigns.content import (
    MERGE_FIELDS,
    SYNTHETIC_PATIENT,
    CampaignContent,
    ContentError,
    content_fields,
    content_of,
    content_problems,
    content_render,
    merge_fields_allowed,
)
from campaigns.models import Campaign, ContentBlock, EmailTemplate
from campaigns.sending.messages import CampaignRender, message_id_for_preview
from consent.models import Purpose


@dataclass
class ContentPreview:
    """What the fragment shows. `errors`: the content cannot be rendered at all (nothing else is set);
    `problems`: it renders, but cannot be submitted as it is (R-SEND-SCOPE and the rest)."""

    subject: str = ""
    html: str = ""
    text: str = ""
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fields_used: tuple[str, ...] = ()
    fields_allowed: tuple[str, ...] | None = None  # None: no purpose chosen yet
    form_version: int | None = None
    synthetic_name: str = f"{SYNTHETIC_PATIENT['first_name']} {SYNTHETIC_PATIENT['last_name']}"


def content_preview_build(*, content: CampaignContent) -> ContentPreview:
    """The whole message as the synthetic patient would receive it (subject, HTML document, text part), and
    what would stop its submission. `content.purpose` may be unsaved (no purpose chosen yet)."""
    used, syntax = content_fields(content)
    if syntax:
        return ContentPreview(errors=[problem.message for problem in syntax])
    campaign = Campaign(purpose=content.purpose, subject=content.subject, body_text=content.intro_text)
    try:
        # Every merge field renders in a preview (made-up values); whether the purpose allows it is a problem
        # listed beside it, so the marketer sees both.
        render = CampaignRender(campaign=campaign, content=content, allowed_fields=MERGE_FIELDS)
    except ContentError as error:
        return ContentPreview(errors=error.messages)
    except ValueError:  # the email package refuses the subject (a line break in it)
        return ContentPreview(errors=[_("The subject cannot contain line breaks.")])
    message = render.assemble(
        delivery_id=0,
        to_address=SYNTHETIC_PATIENT["email"],
        merge_values=SYNTHETIC_PATIENT,
        message_id=message_id_for_preview(),
    )
    preview = ContentPreview(subject=message.subject, html=message.html, text=message.text, fields_used=used)
    if content.purpose.pk is not None:
        allowed, form = merge_fields_allowed(purpose_id=content.purpose.pk)
        preview.fields_allowed = allowed
        preview.form_version = form.version if form is not None else None
        preview.problems = [problem.message for problem in content_problems(content)]
    return preview


def content_preview_context(*, campaign: Campaign) -> dict:
    """The context of templates/campaigns/editor/_content_preview.html for a saved campaign."""
    return {"campaign": campaign, "preview": content_preview_build(content=content_of(campaign))}


def library_item_preview(*, template: EmailTemplate | None = None, block: ContentBlock | None = None) -> str:
    """A template or a block alone, as an HTML document for a sandboxed frame, with the synthetic patient's values
    (every merge field renders; which ones a campaign may use depends on its purpose)."""
    sample = Purpose(name=_("the campaign's purpose"))
    if block is not None:
        content = CampaignContent(purpose=sample, subject="", blocks=(block,), template=template)
    else:
        content = CampaignContent(
            purpose=sample,
            subject="",
            template=template,
            intro_text=_("The campaign's content goes here: the marketer's introduction and the approved blocks."),
        )
    try:
        rendered = content_render(content, allowed_fields=MERGE_FIELDS)
    except ContentError as error:
        return "<p>" + html.escape(" ".join(error.messages)) + "</p>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"></head>'
        '<body style="font-family: Arial, sans-serif; font-size: 17px; line-height: 1.5; color: #1b1b1b;">'
        f"{rendered.fill(SYNTHETIC_PATIENT)[0]}</body></html>"
    )
