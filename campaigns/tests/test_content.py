"""Campaign content (campaigns.content, campaigns.sending.messages): the merge-field sandbox refuses every template trick,
HTML is sanitised for email, CSS inlined, a text part derived; the content is rendered once per batch and each
recipient's values substituted, escaped in HTML (R-SEND-SCOPE, ADR 0005)."""

import email
import email.policy
from unittest import mock

import pytest
from django.core import mail

from campaigns import content as content_module
from campaigns.content import (
    SYNTHETIC_PATIENT,
    CampaignContent,
    ContentError,
    content_render,
    css_problems,
    html_sanitise,
    html_to_text,
    library_html_clean,
    template_fields,
    template_render,
)
from campaigns.models import Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.sending.messages import CampaignRender
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import block_make, campaign_approved_make, template_make
from consent import crypto
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

TRICKS = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ first_name.upper }}",
    "{{ first_name.__class__ }}",
    "{{ first_name['x'] }}",
    "{{ first_name[0] }}",
    "{% for x in first_name %}{{ x }}{% endfor %}",
    "{% if first_name %}yes{% endif %}",
    "{% include 'base.html' %}",
    "{% import 'macros.html' as m %}",
    "{% from 'x.html' import y %}",
    "{% extends 'base.html' %}",
    "{% set x = 1 %}",
    "{% macro m() %}{% endmacro %}",
    "{% raw %}{{ first_name }}{% endraw %}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ range(100000) }}",
    "{{ first_name|upper }}",
    "{{ first_name|e }}",
    "{{ first_name() }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ self }}",
    "{{ request }}",
    "{{ settings.SECRET_KEY }}",
    "{{ 7*7 }}",
    "{{ 'a' ~ first_name }}",
    "{{ 'literal' }}",
    "{{ first_name if true }}",
    "{{- first_name -}}",
    "{# a comment #}",
    "{% load static %}",
    "{% csrf_token %}",
    "{{ first_name",
    "{{ }}",
    "{{ ssn }}",
]


@pytest.mark.parametrize("source", TRICKS)
def test_r_send_scope_sandbox_refuses_template_tricks(source):
    """R-SEND-SCOPE: only plain text and {{ field }} of a known merge field; everything else is refused, before
    anything is rendered, with a message that says where and what."""
    with pytest.raises(ContentError) as refused:
        template_fields(f"Dear patient, {source} bye", where="Introduction")
    assert refused.value.messages and all(
        message.startswith("Introduction, line 1:") for message in refused.value.messages
    )
    with pytest.raises(ContentError):
        template_render(f"Dear patient, {source} bye", where="Introduction", values=SYNTHETIC_PATIENT)


def test_sandbox_refusal_names_the_unknown_field_and_the_line():
    with pytest.raises(ContentError) as refused:
        template_fields("Hello\n{{ config }}", where="Block 2 \u201cOffer\u201d")
    assert refused.value.messages == [
        "Block 2 \u201cOffer\u201d, line 2: {{ config }} is not a merge field. The merge fields are "
        "{{ first_name }}, {{ last_name }}, {{ email }}, {{ postal_code }}, {{ state }}, {{ birth_year }}, "
        "{{ last_visit }}, {{ condition_codes }}."
    ]


def test_sandbox_accepts_plain_text_and_merge_fields_and_renders_them():
    source = "Dear {{ first_name }},\nyour ZIP {{postal_code}} and again {{ first_name }}. Braces alone: } { }}\n"

    assert template_fields(source, where="x") == ("first_name", "postal_code")
    assert template_render(source, where="x", values={"first_name": "Ann", "postal_code": "62701"}) == (
        "Dear Ann,\nyour ZIP 62701 and again Ann. Braces alone: } { }}\n"
    )


# --- Sanitising, CSS, text -----------------------------------------------------------------------------------

DIRTY = [
    ("<script>alert(1)</script><p>ok</p>", "<p>ok</p>"),
    ('<img src="https://x.example/a.png" onerror="alert(1)" alt="A">', '<img src="https://x.example/a.png" alt="A">'),
    ('<a href="javascript:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="JaVaScRiPt:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>', "<a>x</a>"),
    ('<a href="http://plain.example/">x</a>', "<a>x</a>"),
    ('<p onclick="steal()" onmouseover="x()">hi</p>', "<p>hi</p>"),
    (
        '<p style="color: red; position: fixed; background-image: url(https://t.example/p.gif)">hi</p>',
        '<p style="color:red">hi</p>',
    ),
    ('<iframe src="https://evil.example"></iframe><p>after</p>', "<p>after</p>"),
    ('<form action="https://evil.example"><input name="ssn"></form>', ""),
    ("<style>p { color: red }</style><p>x</p>", "<p>x</p>"),
    ("<svg><script>alert(1)</script></svg>", ""),
    ("<!-- note --><p>x</p>", "<p>x</p>"),
    ('<object data="x.swf"></object><embed src="x">', ""),
    ('<meta http-equiv="refresh" content="0;url=https://evil.example"><p>x</p>', "<p>x</p>"),
]


@pytest.mark.parametrize(("dirty", "clean"), DIRTY)
def test_sanitiser_removes_scripts_handlers_and_unsafe_urls(dirty, clean):
    assert html_sanitise(dirty) == clean


def test_sanitiser_keeps_email_formatting():
    source = (
        "<h2>Offer</h2><p><strong>Bold</strong> <em>it</em><br>next</p><ul><li>one</li></ul>"
        '<table width="100%"><tr><td align="center">cell</td></tr></table>'
        '<a href="https://riverside-health.example/cpap">shop</a> '
        '<a href="mailto:care@riverside-health.example">mail</a>'
    )
    assert html_sanitise(source) == source.replace(
        '<table width="100%"><tr>', '<table width="100%"><tbody><tr>'
    ).replace("</tr></table>", "</tr></tbody></table>")


def test_library_html_keeps_merge_fields_through_sanitising_even_in_attributes():
    source = (
        '<p class="lead">Hi {{ first_name }}</p><a href="https://x.example/?zip={{ postal_code }}">x</a>'
        "<script>1</script>"
    )

    assert library_html_clean(source, where="Block") == (
        '<p class="lead">Hi {{ first_name }}</p><a href="https://x.example/?zip={{ postal_code }}">x</a>'
    )


def test_sanitising_cannot_assemble_template_syntax_out_of_removed_tags():
    with pytest.raises(ContentError):
        library_html_clean("{<script>x</script>{ config }}", where="Block")


@pytest.mark.parametrize(
    "css",
    [
        "@import url(https://x.example/a.css);",
        "p { background: url(https://t.example/p.gif) }",
        "p { width: expression(alert(1)) }",
        "</style><script>alert(1)</script>",
    ],
)
def test_stylesheet_that_loads_or_hides_anything_is_refused(css):
    assert css_problems(css)


def test_html_to_text_is_readable():
    source = (
        "<h2>New masks</h2><p>Soft &amp; quiet,\n   in three sizes.</p><ul><li>Small</li><li>Large</li></ul>"
        '<p><a href="https://x.example/shop">Shop now</a> or <a href="mailto:care@x.example">care@x.example</a></p>'
        '<img src="https://x.example/m.png" alt="A mask">'
    )
    assert html_to_text(source) == (
        "New masks\n\nSoft & quiet, in three sizes.\n\n- Small\n- Large\n\n"
        "Shop now (https://x.example/shop) or care@x.example\n\nA mask"
    )


def test_content_render_inlines_the_template_css_and_leaves_no_class_or_style_tag():
    purpose = purpose_make()
    template = template_make(css=".content p { color: #123456 } .header h1 { font-size: 22px }")
    block = block_make(html='<p class="note">From the block</p>')

    rendered = content_render(
        CampaignContent(purpose=purpose, subject="S", intro_text="Intro & more", template=template, blocks=(block,)),
        allowed_fields=(),
    )

    assert '<h1 style="font-size:22px">Riverside Health</h1>' in rendered.html
    assert '<p style="color:#123456">Intro &amp; more</p>' in rendered.html
    assert '<p style="color:#123456">From the block</p>' in rendered.html
    assert "class=" not in rendered.html and "<style" not in rendered.html
    assert rendered.text == "Riverside Health\n\nIntro & more\n\nFrom the block\n\nCall us: 555-0100"


# --- Render once, substitute per recipient ----------------------------------------------------------------------


def _launched_with_names(names: list[str], *, intro: str, merge_fields=("first_name", "email")):
    purpose = purpose_make()
    form_published_make(purpose, merge_fields=list(merge_fields))
    for index, name in enumerate(names):
        patient = patient_make(full_name=name, email=f"p{index}@example.org", condition_codes=["E11.9", "G47.33"])
        authorization_make(patient=patient, purpose=purpose)
    block = block_make(html='<p>Hello {{ first_name }}, <a href="https://x.example/?who={{ first_name }}">see</a></p>')
    campaign = campaign_approved_make(purpose=purpose, body_text=intro, blocks=[block])
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    return campaign


def _parts(message) -> tuple[str, str]:
    parsed = email.message_from_bytes(message.message().as_bytes(linesep="\r\n"), policy=email.policy.default)
    text, html = (part.get_content() for part in parsed.iter_parts())
    return text, html


def test_r_send_scope_each_recipient_gets_their_own_values_escaped_in_html_plain_in_text():
    """R-SEND-SCOPE: a field the form lists is filled per recipient; a value with markup is escaped in the HTML
    part (it cannot add a tag) and plain in the text part."""
    campaign = _launched_with_names(["Ann Lee", "<b>Bob</b> Smith"], intro="Dear {{ first_name }},")

    with (
        mock.patch(
            "campaigns.sending.messages.merge_values_for_deliveries", wraps=content_module.merge_values_for_deliveries
        ) as values,
        mock.patch("campaigns.sending.messages.content_render", wraps=content_render) as render,
    ):
        delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=10)

    assert render.call_count == 1  # rendered, sanitised and inlined once for the batch
    assert values.call_count == 1  # the recipients' values read once for the batch
    by_to = {message.to[0]: _parts(message) for message in mail.outbox}
    text, html = by_to["p0@example.org"]
    assert "Dear Ann," in text and "Hello Ann, see (https://x.example/?who=Ann)" in text
    assert "<p>Dear Ann,</p>" in html and 'href="https://x.example/?who=Ann"' in html
    text, html = by_to["p1@example.org"]
    assert "Dear <b>Bob</b>," in text
    assert "Dear &lt;b&gt;Bob&lt;/b&gt;," in html and "<b>Bob" not in html
    assert "hmf" not in text + html  # no placeholder left
    assert Delivery.objects.filter(campaign=campaign, status="sent").count() == 2


def test_merge_values_read_only_the_fields_used():
    campaign = _launched_with_names(
        ["Ann Lee"], intro="Codes: {{ condition_codes }}", merge_fields=["first_name", "condition_codes"]
    )
    delivery = Delivery.objects.get(campaign=campaign)

    with mock.patch("consent.crypto.decrypt", wraps=crypto.decrypt) as decrypt:
        codes = content_module.merge_values_for_deliveries(
            campaign_id=campaign.pk, delivery_ids=[delivery.pk], fields=["condition_codes"]
        )
    assert decrypt.call_count == 0  # no encrypted column was needed, so none was read
    with mock.patch("consent.crypto.decrypt", wraps=crypto.decrypt) as decrypt:
        names = content_module.merge_values_for_deliveries(
            campaign_id=campaign.pk, delivery_ids=[delivery.pk], fields=["first_name", "last_name"]
        )
    assert decrypt.call_count == 1  # the full name, once, for both fields

    assert codes == {delivery.pk: {"condition_codes": "E11.9, G47.33"}}
    assert names == {delivery.pk: {"first_name": "Ann", "last_name": "Lee"}}


def test_r_send_scope_render_refuses_a_field_the_current_form_no_longer_lists():
    """R-SEND-SCOPE at send time: if a new form version drops a field after approval, the batch is not rendered
    (nothing is sent) rather than use information the patient's form does not describe."""
    campaign = _launched_with_names(["Ann Lee"], intro="Dear {{ first_name }},")
    form_published_make(campaign.purpose, merge_fields=["email"])  # version 2 lists email only

    with pytest.raises(ContentError) as refused:
        CampaignRender(campaign=campaign)

    assert "{{ first_name }}" in str(refused.value) and "45 CFR 164.508(c)(1)(i)" in str(refused.value)
    assert mail.outbox == []


def test_content_without_merge_fields_reads_no_patient_values():
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose, body_text="No fields here.")
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)

    with mock.patch("campaigns.sending.messages.merge_values_for_deliveries") as values:
        delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=10)

    values.assert_not_called()
    assert len(mail.outbox) == 1


@pytest.mark.parametrize("allowed", [("email",), ()], ids=["narrower", "none"])
def test_r_send_scope_render_with_allowed_fields_narrower_than_the_content_refuses_with_the_allowed_list(allowed):
    """R-SEND-SCOPE: a caller that passes its own `allowed_fields` (no form behind them) and content that uses a
    field outside them gets a ContentError naming the field and what is allowed, not an AttributeError."""
    content = CampaignContent(purpose=purpose_make(), subject="S", intro_text="Dear {{ first_name }}, {{ email }}")

    with pytest.raises(ContentError) as refused:
        content_render(content, allowed_fields=allowed)

    (problem,) = refused.value.problems
    assert problem.code == "merge_field_out_of_scope"
    assert problem.fields == (("first_name",) if allowed else ("first_name", "email"))
    assert "{{ first_name }}" in problem.message and "45 CFR 164.508(c)(1)(i)" in problem.message and "R-SEND-SCOPE" not in problem.message
    assert "allows only: " + ("{{ email }}" if allowed else "none") in problem.message
    assert "version" not in problem.message
