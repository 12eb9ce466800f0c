"""`{% load campaign_content %}{% content_preview campaign %}`: a saved campaign's content rendered with the
synthetic patient (campaigns.content_preview), for pages that show a campaign, such as the review page."""

from django import template

from campaigns.content_preview import content_preview_context

register = template.Library()


@register.inclusion_tag("campaigns/editor/_content_preview_card.html")
def content_preview(campaign):
    return content_preview_context(campaign=campaign)
