"""`{% load campaign_drafts %}{% draft_actions campaign %}`: what the signed-in staff member can do with a campaign
as its author (issue 17): continue it in the wizard while it can be edited, duplicate it (any status), delete a
draft, withdraw a submission. The campaign page and the editor show it; the services decide again on use
(campaigns.services.drafts)."""

from django import template

from campaigns.services.drafts import may_delete, may_withdraw
from campaigns.services.lifecycle import EDITABLE

register = template.Library()


@register.inclusion_tag("campaigns/wizard/_draft_actions.html", takes_context=True)
def draft_actions(context, campaign, *, show_edit=True):
    user = context["request"].user
    return {
        "campaign": campaign,
        "csrf_token": context.get("csrf_token"),
        "editable": campaign.status in EDITABLE and campaign.kind == campaign.Kind.CAMPAIGN,
        "show_edit": show_edit,
        "may_duplicate": campaign.kind == campaign.Kind.CAMPAIGN,
        "may_delete": may_delete(user, campaign),
        "may_withdraw": may_withdraw(user, campaign),
    }
