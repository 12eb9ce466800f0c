"""Content library forms: input shape only. campaigns.services.library sanitises and checks."""

from django import forms
from django.utils.translation import gettext_lazy as _

from campaigns.models import ContentBlock, EmailTemplate
from consent.models import Purpose

_CODE = {"class": "code", "spellcheck": "false"}


class EmailTemplateForm(forms.Form):
    name = forms.CharField(max_length=EmailTemplate._meta.get_field("name").max_length, label=_("Template name"))
    header_html = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, **_CODE}),
        required=False,
        label=_("Header (HTML)"),
        help_text=_('Above the campaign\'s content, e.g. your logo and name. It sits in <div class="header">.'),
    )
    footer_html = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, **_CODE}),
        required=False,
        label=_("Footer (HTML)"),
        help_text=_(
            'Below the content, in <div class="footer">. The postal address and the one-click '
            "unsubscribe link are always added after it."
        ),
    )
    css = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, **_CODE}),
        required=False,
        label=_("Stylesheet (CSS)"),
        help_text=_(
            "Written into each element's style attribute when a message is made (mail clients ignore "
            "style sheets). Address .header, .content and .footer. No @import and no url()."
        ),
    )


class ContentBlockForm(forms.Form):
    name = forms.CharField(
        max_length=ContentBlock._meta.get_field("name").max_length,
        label=_("Block name"),
        help_text=_("Marketers choose blocks by this name."),
    )
    html = forms.CharField(widget=forms.Textarea(attrs={"rows": 12, **_CODE}), label=_("Content (HTML)"))
    purposes = forms.ModelMultipleChoiceField(
        queryset=Purpose.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=_("Purposes it may be used for"),
        help_text=_(
            "Campaigns for other purposes are not offered this block, and cannot be submitted with it. "
            "Tick none to allow it for every purpose."
        ),
    )
