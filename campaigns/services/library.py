"""Writes about campaign content: the content library (email templates and content blocks that compliance officers
and administrators write, approve and retire), the checks a campaign's content passes when saved, and the test
send of a campaign to its sender's own verified address. ADR 0005.

A library item is a draft until approved; an approved item never changes (edit a copy, approve the copy), so an
approved campaign's content cannot change under it; a retired item can no longer be picked, and a campaign that
still uses one cannot be submitted. Every write is audited with ids and codes only.
"""

from dataclasses import replace
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import actions
from audit.models import AuditEvent
from audit.services import audit_record
from campaigns.content import (
    MAX_BLOCKS,
    CampaignContent,
    ContentError,
    block_purpose_problems,
    content_fields,
    content_of,
    css_problems,
    library_html_clean,
)
from campaigns.models import Campaign, ContentBlock, ContentStatus, EmailTemplate
from campaigns.permissions import may_manage_content
from campaigns.sending.dispatch import campaign_test_message_send_unchecked

# A test send goes to its sender only; this many per user in the window is plenty, and stops a stuck button.
TEST_SEND_LIMIT = 5
TEST_SEND_WINDOW = timedelta(minutes=10)


def _manager_check(actor) -> None:
    if not may_manage_content(actor):
        raise PermissionDenied("Only a compliance officer or an administrator may manage the content library.")


def _clean_html(source: str, *, where: str) -> str:
    try:
        return library_html_clean(source, where=where)
    except ContentError as error:
        raise ValidationError(error.messages) from None


# --- The library ------------------------------------------------------------------------------------------


def _item_audit(actor, item, action: str, **details) -> None:
    kind = "email_template" if isinstance(item, EmailTemplate) else "content_block"
    audit_record(
        actor=actor,
        action=actions.LIBRARY_ITEM_ACTIONS[kind][action],
        object_type=kind,
        object_id=item.pk,
        details={"status": item.status, **details},
    )


def _template_fields(*, name: str, header_html: str, footer_html: str, css: str) -> dict:
    problems = [problem.message for problem in css_problems(css)]
    fields = {"name": name.strip(), "css": css.strip()}
    for key, where, source in (("header_html", _("Header"), header_html), ("footer_html", _("Footer"), footer_html)):
        try:
            fields[key] = _clean_html(source, where=where)
        except ValidationError as error:
            problems.extend(error.messages)
    if problems:
        raise ValidationError(problems)
    return fields


def email_template_create(
    *, actor, name: str, header_html: str = "", footer_html: str = "", css: str = ""
) -> EmailTemplate:
    """A new draft template; its HTML is stored sanitised, its merge fields checked, its CSS checked."""
    _manager_check(actor)
    template = EmailTemplate(
        created_by=actor, **_template_fields(name=name, header_html=header_html, footer_html=footer_html, css=css)
    )
    template.full_clean()
    with transaction.atomic():
        template.save(force_insert=True)
        _item_audit(actor, template, "created")
    return template


def email_template_update(
    *, actor, template_id: int, name: str, header_html: str = "", footer_html: str = "", css: str = ""
) -> EmailTemplate:
    _manager_check(actor)
    fields = _template_fields(name=name, header_html=header_html, footer_html=footer_html, css=css)
    with transaction.atomic(durable=True):
        template = EmailTemplate.objects.select_for_update().get(pk=template_id)
        _draft_check(template)
        changed = [key for key, value in fields.items() if getattr(template, key) != value]
        if not changed:
            return template
        for key in changed:
            setattr(template, key, fields[key])
        template.full_clean()
        template.save(update_fields=[*changed, "updated_at"])
        _item_audit(actor, template, "updated", changed=changed)
    return template


def _purpose_ids(purposes) -> list[int]:
    return sorted({purpose.pk for purpose in purposes or ()})


def content_block_create(*, actor, name: str, html: str, purposes=()) -> ContentBlock:
    """A new draft block; its HTML is stored sanitised and its merge fields checked. `purposes`: the purposes it may
    be used with (none: every purpose)."""
    _manager_check(actor)
    block = ContentBlock(created_by=actor, name=name.strip(), html=_clean_html(html, where=_("Block")))
    if not block.html.strip():
        raise ValidationError(_("The block has no content left once cleaned for email: write some text."))
    block.full_clean()
    purpose_ids = _purpose_ids(purposes)
    with transaction.atomic():
        block.save(force_insert=True)
        block.purposes.set(purpose_ids)
        _item_audit(actor, block, "created", **({"purposes": purpose_ids} if purpose_ids else {}))
    return block


def content_block_update(*, actor, block_id: int, name: str, html: str, purposes=None) -> ContentBlock:
    """Change a draft block; `purposes` None leaves its purposes as they are."""
    _manager_check(actor)
    fields = {"name": name.strip(), "html": _clean_html(html, where=_("Block"))}
    if not fields["html"].strip():
        raise ValidationError(_("The block has no content left once cleaned for email: write some text."))
    with transaction.atomic(durable=True):
        block = ContentBlock.objects.select_for_update().get(pk=block_id)
        _draft_check(block)
        changed = [key for key, value in fields.items() if getattr(block, key) != value]
        purposes_changed = purposes is not None and _purpose_ids(purposes) != _purpose_ids(block.purposes.all())
        if not changed and not purposes_changed:
            return block
        for key in changed:
            setattr(block, key, fields[key])
        block.full_clean()
        if changed:
            block.save(update_fields=[*changed, "updated_at"])
        details = {}
        if purposes_changed:
            block.purposes.set(_purpose_ids(purposes))
            details["purposes"] = _purpose_ids(purposes)
            changed.append("purposes")
        _item_audit(actor, block, "updated", changed=changed, **details)
    return block


def _draft_check(item) -> None:
    if item.status != ContentStatus.DRAFT:
        raise ValidationError(
            _("An %(status)s item cannot be changed: make a copy, edit it and approve it.")
            % {"status": item.get_status_display().lower()}
        )


def _model_of(kind: str):
    return {"template": EmailTemplate, "block": ContentBlock}[kind]


def library_item_approve(*, actor, kind: str, item_id: int):
    """Approve a draft template or block: from now on marketers can pick it, and it never changes."""
    _manager_check(actor)
    with transaction.atomic(durable=True):
        item = _model_of(kind).objects.select_for_update().get(pk=item_id)
        if item.status != ContentStatus.DRAFT:
            raise ValidationError(
                _("An %(status)s item cannot be approved.") % {"status": item.get_status_display().lower()}
            )
        item.status = ContentStatus.APPROVED
        item.approved_by = actor
        item.approved_at = timezone.now()
        item.full_clean()
        item.save(update_fields=["status", "approved_by", "approved_at", "updated_at"])
        _item_audit(actor, item, "approved")
    return item


def library_item_retire(*, actor, kind: str, item_id: int):
    """Retire a template or block: it can no longer be picked, and campaigns still using it cannot be submitted.
    Campaigns already approved keep the content that was approved."""
    _manager_check(actor)
    with transaction.atomic(durable=True):
        item = _model_of(kind).objects.select_for_update().get(pk=item_id)
        if item.status == ContentStatus.RETIRED:
            raise ValidationError(_("This item is already retired."))
        previous = item.status
        item.status = ContentStatus.RETIRED
        item.retired_at = timezone.now()
        item.save(update_fields=["status", "retired_at", "updated_at"])
        _item_audit(actor, item, "retired", previous=previous)
    return item


def library_item_copy(*, actor, kind: str, item_id: int):
    """A new draft with the same content: how an approved or retired item is changed."""
    _manager_check(actor)
    model = _model_of(kind)
    source = model.objects.get(pk=item_id)
    name = f"{source.name} (copy)"[: model._meta.get_field("name").max_length]
    content = (
        {"header_html": source.header_html, "footer_html": source.footer_html, "css": source.css}
        if kind == "template"
        else {"html": source.html}
    )
    copy = model(created_by=actor, name=name, **content)
    copy.full_clean()
    with transaction.atomic():
        copy.save(force_insert=True)
        if kind == "block":  # the copy is for the same purposes as its source
            copy.purposes.set(_purpose_ids(source.purposes.all()))
        _item_audit(actor, copy, "created", copied_from=source.pk)
    return copy


# --- A campaign's content when it is saved ------------------------------------------------------------------


def campaign_content_validate(content: CampaignContent) -> None:
    """What a draft must satisfy to be saved: readable merge fields only (the sandbox's rules), none in the
    subject, an approved template and approved blocks, at most MAX_BLOCKS blocks. Whether the purpose's form allows
    the fields used (R-SEND-SCOPE) and whether there is anything to send are checked at submission. A block not
    approved for the purpose is refused here already, so a draft never holds one (issue 17)."""
    _fields, problems = content_fields(content)
    problems += block_purpose_problems(content)
    messages = [problem.message for problem in problems]
    if content.template is not None and content.template.status != ContentStatus.APPROVED:
        messages.append(
            _("The template \u201c%(name)s\u201d is not approved: choose an approved one.")
            % {"name": content.template.name}
        )
    for position, block in enumerate(content.blocks, start=1):
        if block.status != ContentStatus.APPROVED:
            messages.append(
                _("Block %(position)s \u201c%(name)s\u201d is not approved: choose an approved block.")
                % {"position": position, "name": block.name}
            )
    if len(content.blocks) > MAX_BLOCKS:
        messages.append(_("A campaign has at most %(count)s blocks.") % {"count": MAX_BLOCKS})
    if messages:
        raise ValidationError(messages)


# --- Test send ---------------------------------------------------------------------------------------------


def staff_verified_address(*, user) -> EmailAddress | None:
    """The user's own verified address (the primary one first): the only place a test send can go."""
    return EmailAddress.objects.filter(user=user, verified=True).order_by("-primary", "id").first()


def campaign_test_send(*, actor, campaign_id: int) -> str:
    """Send the campaign's saved content once, with the synthetic patient, to the actor's own verified address,
    "[TEST]" before the subject; synchronously, through the one sender's transport
    (campaigns.sending.dispatch.campaign_test_message_send_unchecked), with the assembled bytes (the same bytes a patient's message
    has, over TLS and DKIM-signed like them), so what staff see is what patients get and no other code holds a mail
    transport. Never to any other address: there is no parameter for one. No patient is involved, so no
    authorization is either. Audited. Returns the address."""
    address = staff_verified_address(user=actor)
    if address is None:
        raise ValidationError(
            _("Your account has no verified email address, so a test cannot be sent. Verify one first.")
        )
    since = timezone.now() - TEST_SEND_WINDOW
    if (
        AuditEvent.objects.filter(actor=actor, action=actions.CAMPAIGN_TEST_SENT, occurred_at__gte=since).count()
        >= TEST_SEND_LIMIT
    ):
        raise ValidationError(
            _("You sent %(count)s tests in the last ten minutes. Wait a little and try again.") % {"count": TEST_SEND_LIMIT}
        )
    campaign = Campaign.objects.select_related("purpose", "template").get(pk=campaign_id)
    content = content_of(campaign)
    content = replace(content, subject=f"[TEST] {content.subject}"[:998])
    try:
        campaign_test_message_send_unchecked(campaign=campaign, content=content, to_address=address.email)
    except ContentError as error:
        raise ValidationError(error.messages) from None
    except Exception as error:  # the mail server refused or is away: say so, audit the failure's kind only
        audit_record(
            actor=actor,
            action=actions.CAMPAIGN_TEST_SEND_FAILED,
            object_type="campaign",
            object_id=campaign.pk,
            details={"email_address": address.pk, "error": type(error).__name__},
        )
        raise ValidationError(
            _("The test could not be sent: the mail server did not take it. Try again later.")
        ) from None
    audit_record(
        actor=actor,
        action=actions.CAMPAIGN_TEST_SENT,
        object_type="campaign",
        object_id=campaign.pk,
        details={"email_address": address.pk},
    )
    return address.email
