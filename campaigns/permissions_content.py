"""Who may manage the content library: compliance officers and administrators. Marketers pick approved items in
the campaign editor; to them the library's pages do not exist (404), as for any page that is not theirs."""

from django.http import Http404

from campaigns.models import ContentBlock, EmailTemplate
from hipaamail.roles import ADMINISTRATOR, COMPLIANCE_OFFICER, roles_of


def may_manage_content(user) -> bool:
    return bool(roles_of(user) & {COMPLIANCE_OFFICER, ADMINISTRATOR})


def access_content_library(user) -> None:
    if not may_manage_content(user):
        raise Http404


def access_email_template_by_id(user, template_id: int) -> EmailTemplate:
    access_content_library(user)
    try:
        return EmailTemplate.objects.select_related("created_by", "approved_by").get(pk=template_id)
    except EmailTemplate.DoesNotExist:
        raise Http404 from None


def access_content_block_by_id(user, block_id: int) -> ContentBlock:
    access_content_library(user)
    try:
        return ContentBlock.objects.select_related("created_by", "approved_by").get(pk=block_id)
    except ContentBlock.DoesNotExist:
        raise Http404 from None
