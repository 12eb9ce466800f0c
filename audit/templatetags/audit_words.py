"""`{% load audit_words %}`: an audit action in words (`{{ action|action_label }}`: "Campaign approved")."""
from django import template

from audit import sentences

register = template.Library()


@register.filter(name="action_label")
def action_label(action: str) -> str:
    return sentences.action_label(str(action))
