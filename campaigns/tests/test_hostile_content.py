"""Template tricks in campaign content (issue 16, item 4): the content renderer evaluates nothing beyond what
campaigns/content.py allows, plain text and `{{ field }}` of a merge field (R-SEND-SCOPE).

Hypothesis assembles sources from the pieces of Jinja2's and Django's template languages ("{{ ", "{% load ",
"{% include", "{{ settings.SECRET_KEY }}", filters, attribute and item access, comments, raw blocks, whitespace
control) around merge fields and text. Each source is either refused with a message that names where, or
rendered to exactly the text with each `{{ field }}` replaced by its value: nothing else is evaluated. The same
sources go through the real editor, live preview and content library views."""
import re

import pytest
from django.conf import settings as django_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from audit.tests.hostile import (
    HOSTILE,
    MARKER,
    assert_escaped,
    assert_not_a_server_error,
    bound_forms,
    form_errors,
)
from campaigns.content import MERGE_FIELDS, SYNTHETIC_PATIENT, ContentError, template_fields, template_render
from campaigns.models import Campaign, ContentBlock, EmailTemplate
from campaigns.tests.views.test_editor import _form, _scoped_purpose

pytestmark = pytest.mark.django_db

PIECES = [
    "{{ ", " }}", "{{", "}}", "{%", "%}", "{% load ", "{% include ", "{% extends ", "{% debug %}", "{% raw %}",
    "{% endraw %}", "{% set x = 1 %}", "{# ", " #}", "{{- ", " -}}", "settings.SECRET_KEY", "settings", ".",
    "__class__", "__globals__", "[", "]", "(", ")", "|", "safe", "upper", "'", '"', "~", "7*7", "config",
    "request", "self", "cycler", "lipsum", "range(9)", "\n", " ", "{", "}", "%", "#", "-", "$", "${", "<%", "%>",
    "<script>", MARKER,
]
_FIELD = st.sampled_from(MERGE_FIELDS)
SOURCES = st.lists(
    st.one_of(
        st.sampled_from(PIECES),
        _FIELD,
        _FIELD.map(lambda name: "{{ " + name + " }}"),
        st.text(max_size=6),
    ),
    max_size=14,
).map("".join)
_PLAIN_FIELD = re.compile(r"\{\{[ \t\n\r\f\v]*(" + "|".join(MERGE_FIELDS) + r")[ \t\n\r\f\v]*\}\}")


@settings(HOSTILE, max_examples=400)
@given(source=SOURCES)
def test_r_send_scope_the_renderer_evaluates_nothing_but_merge_fields(source):
    """R-SEND-SCOPE: any source is refused (each message says where) or rendered to exactly its text with each
    `{{ field }}` replaced by the field's value; no statement, filter, attribute or setting is evaluated."""
    try:
        rendered = template_render(source, where="Introduction", values=SYNTHETIC_PATIENT)
    except ContentError as refused:
        assert refused.messages and all(message.startswith("Introduction, line ") for message in refused.messages)
        return
    expected = _PLAIN_FIELD.sub(lambda match: SYNTHETIC_PATIENT[match.group(1)], source)
    assert rendered == _as_jinja_writes_lines(expected, source), source
    assert django_settings.SECRET_KEY not in rendered
    assert set(template_fields(source, where="Introduction")) <= set(MERGE_FIELDS)


def _as_jinja_writes_lines(expected: str, source: str) -> str:
    """Jinja2 writes every line ending ("\r\n", "\r") as "\n" (its newline_sequence): layout, not evaluation.
    Only a source with merge fields is rendered by Jinja2 at all."""
    if not _PLAIN_FIELD.search(source):
        return expected
    return re.sub(r"\r\n|\r", "\n", expected)


TRICKS = st.one_of(
    SOURCES,
    st.sampled_from(
        [
            "{{ settings.SECRET_KEY }}",
            "{% load static %}{% static 'x' %}",
            "{% include 'base.html' %}",
            "{{ ",
            "{% debug %}",
            "{{ first_name|safe }}<script>" + MARKER + "</script>",
            "{{ cycler.__init__.__globals__.os }}",
        ]
    ),
)


def test_r_send_scope_tricks_in_the_editor_preview_and_library_are_refused_or_shown_as_text(verified_client):
    """R-SEND-SCOPE, R-NO-PHI-LEAK: the editor, the live preview and the content library refuse what the
    renderer refuses (nothing saved, nothing audited) and never show a setting or run a script."""
    purpose = _scoped_purpose()
    verified_client.sign_in(role="compliance officer")  # writes campaigns and the content library
    secret = django_settings.SECRET_KEY

    outcomes = set()

    @settings(HOSTILE, max_examples=15)
    @given(trick=TRICKS)
    def check(trick):
        refused = _refused(f"Hello. {trick}")
        outcomes.add(refused)
        pages = {}
        counts = (Campaign.objects.count(), ContentBlock.objects.count(), EmailTemplate.objects.count())
        events = AuditEvent.objects.count()
        pages["editor"] = verified_client.post("/campaigns/new/", _form(purpose, body_text=f"Hello. {trick}"))
        pages["preview"] = verified_client.post("/campaigns/preview/", _form(purpose, body_text=trick))
        pages["block"] = verified_client.post(
            "/campaigns/content/blocks/new/", {"name": "Offer", "html": f"<p>{trick}</p>"}
        )
        pages["template"] = verified_client.post(
            "/campaigns/content/templates/new/", {"name": "Brand", "header_html": f"<p>{trick}</p>"}
        )
        for name, page in pages.items():
            assert_not_a_server_error(page, name)
            assert_escaped(page, name)
            assert secret not in page.content.decode(), name
        if refused:  # what the renderer refuses, the editor refuses: the form again, with the message
            assert pages["editor"].status_code == 200
        for name in ("editor", "block", "template"):
            if pages[name].status_code == 200:  # refused (or not valid for another reason): nothing written
                assert bound_forms(pages[name]) and form_errors(pages[name]), name
            else:
                assert pages[name].status_code == 302, name
                saved = verified_client.get(pages[name]["Location"])
                assert saved.status_code == 200
                assert_escaped(saved, name)
                assert secret not in saved.content.decode(), name
        written = sum(1 for name in ("editor", "block", "template") if pages[name].status_code == 302)
        now = (Campaign.objects.count(), ContentBlock.objects.count(), EmailTemplate.objects.count())
        assert sum(now) - sum(counts) == written
        if not written:
            assert AuditEvent.objects.count() == events

    check()
    assert outcomes == {True, False}  # some tricks were refused, some content was plain enough to save


def _refused(trick: str) -> bool:
    try:
        template_fields(trick, where="x")
    except ContentError:
        return True
    return False
