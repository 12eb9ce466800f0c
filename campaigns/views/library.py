"""The content library's pages: compliance officers and administrators write, approve, retire and copy email
templates and content blocks. Marketers pick approved items in the campaign editor; to them these pages do not
exist (404). Thin views: campaigns.services.library holds the rules and the audit trail."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from campaigns.content import MERGE_FIELDS
from campaigns.content_preview import library_item_preview
from campaigns.forms.library import ContentBlockForm, EmailTemplateForm
from campaigns.models import ContentBlock, ContentStatus, EmailTemplate
from campaigns.permissions import access_content_block_by_id, access_content_library, access_email_template_by_id
from campaigns.services import library as services_content

_CLEANED = gettext_lazy("Saved. The HTML was cleaned for email (anything not allowed was removed): check the preview.")


@require_safe
def content_library(request):
    access_content_library(request.user)
    return render(
        request,
        "campaigns/content/library.html",
        {
            "templates": EmailTemplate.objects.select_related("created_by", "approved_by").order_by("status", "name"),
            "blocks": ContentBlock.objects.select_related("created_by", "approved_by")
            .prefetch_related("purposes")
            .order_by("status", "name"),
        },
    )


def _item_page(request, *, kind: str, item, form, preview: str | None):
    return render(
        request,
        "campaigns/content/item.html",
        {
            "kind": kind,
            "item": item,
            "form": form,
            "editable": item is None or item.status == ContentStatus.DRAFT,
            "preview": preview,
            "merge_fields": MERGE_FIELDS,
        },
    )


def _saved_message(request, typed: list[str], stored: list[str]) -> None:
    if [value.strip() for value in typed] != [value.strip() for value in stored]:
        messages.warning(request, _CLEANED)
    else:
        messages.success(request, _("Saved."))


@require_http_methods(["GET", "HEAD", "POST"])
def email_template_new(request):
    access_content_library(request.user)
    form = EmailTemplateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            template = services_content.email_template_create(actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            data = form.cleaned_data
            _saved_message(
                request, [data["header_html"], data["footer_html"]], [template.header_html, template.footer_html]
            )
            return redirect("campaigns:content_template_edit", item_id=template.pk)
    return _item_page(request, kind="template", item=None, form=form, preview=None)


@require_http_methods(["GET", "HEAD", "POST"])
def email_template_edit(request, item_id: int):
    template = access_email_template_by_id(request.user, item_id)
    initial = {
        "name": template.name,
        "header_html": template.header_html,
        "footer_html": template.footer_html,
        "css": template.css,
    }
    form = EmailTemplateForm(request.POST or None, initial=initial)
    if request.method == "POST" and template.status == ContentStatus.DRAFT and form.is_valid():
        try:
            saved = services_content.email_template_update(
                actor=request.user, template_id=template.pk, **form.cleaned_data
            )
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            data = form.cleaned_data
            _saved_message(request, [data["header_html"], data["footer_html"]], [saved.header_html, saved.footer_html])
            return redirect("campaigns:content_template_edit", item_id=template.pk)
    _disable_unless_draft(form, template)
    return _item_page(
        request, kind="template", item=template, form=form, preview=library_item_preview(template=template)
    )


@require_http_methods(["GET", "HEAD", "POST"])
def content_block_new(request):
    access_content_library(request.user)
    form = ContentBlockForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            block = services_content.content_block_create(actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            _saved_message(request, [form.cleaned_data["html"]], [block.html])
            return redirect("campaigns:content_block_edit", item_id=block.pk)
    return _item_page(request, kind="block", item=None, form=form, preview=None)


@require_http_methods(["GET", "HEAD", "POST"])
def content_block_edit(request, item_id: int):
    block = access_content_block_by_id(request.user, item_id)
    form = ContentBlockForm(
        request.POST or None,
        initial={"name": block.name, "html": block.html, "purposes": list(block.purposes.all())},
    )
    if request.method == "POST" and block.status == ContentStatus.DRAFT and form.is_valid():
        try:
            saved = services_content.content_block_update(actor=request.user, block_id=block.pk, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            _saved_message(request, [form.cleaned_data["html"]], [saved.html])
            return redirect("campaigns:content_block_edit", item_id=block.pk)
    _disable_unless_draft(form, block)
    return _item_page(request, kind="block", item=block, form=form, preview=library_item_preview(block=block))


def _disable_unless_draft(form, item) -> None:
    if item.status != ContentStatus.DRAFT:
        for field in form.fields.values():
            field.disabled = True


_ACTIONS = {
    "approve": (
        services_content.library_item_approve,
        gettext_lazy("Approved: marketers can now choose it. It can no longer change."),
    ),
    "retire": (
        services_content.library_item_retire,
        gettext_lazy("Retired: it can no longer be chosen for a campaign."),
    ),
    "copy": (services_content.library_item_copy, gettext_lazy("Copied as a new draft: edit it, then approve it.")),
}
_EDIT_URL = {"template": "campaigns:content_template_edit", "block": "campaigns:content_block_edit"}


@require_POST
def library_item_action(request, kind: str, item_id: int, action: str):
    if kind not in _EDIT_URL or action not in _ACTIONS:
        raise Http404
    access = access_email_template_by_id if kind == "template" else access_content_block_by_id
    item = access(request.user, item_id)
    service, done = _ACTIONS[action]
    try:
        result = service(actor=request.user, kind=kind, item_id=item.pk)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect(_EDIT_URL[kind], item_id=item.pk)
    messages.success(request, done)
    return redirect(_EDIT_URL[kind], item_id=result.pk)
