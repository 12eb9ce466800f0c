"""Campaign content: merge fields in a strict sandbox, HTML sanitised for email, CSS inlined, a plain-text
form, the synthetic patient of previews, and the checks content must pass before a campaign is submitted.

A campaign's content is its subject, the marketer's own introduction (plain text), an email template from the
content library (header, footer, stylesheet) and an ordered list of approved content blocks (HTML). ADR 0005.

Merge fields (R-SEND-SCOPE). Content may contain plain text and `{{ name }}` where `name` is one of
consent.documents.PATIENT_FIELDS, and nothing else: no attribute or item access, no filters, no calls, no
literals, no `{% %}` statements, no comments, no whitespace control. `template_fields` refuses anything else by
reading Jinja2's token stream, then checks the parsed tree has only text and plain names; rendering is done by
Jinja2's `SandboxedEnvironment` on a template that has passed both checks. A campaign may only use the fields its
purpose's current published authorization form lists; one that uses another cannot be submitted
(`content_problems`, called by campaigns.services.lifecycle.campaign_submit).

Render once, substitute per recipient. `content_render` renders a campaign's content once per batch with a
random placeholder for each merge field it uses, sanitises the HTML with nh3 and inlines the template's CSS with
css-inline once; campaigns.sending.messages.CampaignRender then substitutes each recipient's values (HTML-escaped in the
HTML part, plain in the text part), as it does the unsubscribe URL. Patient values are read and decrypted per batch,
only for the fields the content uses (`merge_values_for_deliveries`). Previews and test sends use
`SYNTHETIC_PATIENT`, made-up values, never a real patient's.
"""

import functools
import html
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser

import css_inline
import nh3
from django.db.models import Q
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext
from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from campaigns.models import CampaignBlock, ContentBlock, ContentStatus, Delivery, EmailTemplate
from consent.documents import PATIENT_FIELDS
from consent.models import PatientCondition, Purpose
from consent.selectors.form_versions import form_version_current

MERGE_FIELDS: tuple[str, ...] = tuple(PATIENT_FIELDS)
MAX_BLOCKS = 8

# Made-up values for previews and test sends: no real patient's data ever reaches a preview (R-MIN-NECESSARY).
SYNTHETIC_PATIENT: dict[str, str] = {
    "first_name": "Alex",
    "last_name": "Sample",
    "email": "alex.sample@example.org",
    "postal_code": "00000",
    "state": "ZZ",
    "birth_year": "1970",
    "last_visit": "January 2, 2026",
    "condition_codes": "Z00.00",
}
assert set(SYNTHETIC_PATIENT) == set(MERGE_FIELDS), "every merge field needs a synthetic value"


# --- Problems ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContentProblem:
    """Why content cannot be saved, rendered or submitted. `code` and `fields` are codes (for the audit trail);
    `message` is for the staff member and names the place and the field, never a patient's data."""

    code: str
    message: str
    fields: tuple[str, ...] = ()


class ContentError(ValueError):
    def __init__(self, problems: list[ContentProblem]):
        self.problems = problems
        super().__init__(" ".join(problem.message for problem in problems))

    @property
    def messages(self) -> list[str]:
        return [problem.message for problem in self.problems]


# --- The sandbox ------------------------------------------------------------------------------------------

_ENV = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True, undefined=StrictUndefined)
_FIELD_LIST = ", ".join("{{ %s }}" % name for name in MERGE_FIELDS)
_ALLOWED_NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name)
# How a refused construct is named in the message, by the token that opens it.
_OPENERS = {"block_begin": "{%", "raw_begin": "{% raw %}", "comment_begin": "{#", "linestatement_begin": "#"}


def _syntax(where: str, line: int, what: str) -> ContentProblem:
    return ContentProblem(
        "syntax",
        _("%(where)s, line %(line)s: %(what)s Only plain text and merge fields such as {{ first_name }} are allowed.")
        % {"where": where, "line": line, "what": what},
    )


def template_fields(source: str, *, where: str) -> tuple[str, ...]:
    """The merge fields `source` uses, in order of first use. Raises ContentError when it contains anything but
    plain text and `{{ field }}` of a known merge field."""
    used: list[str] = []
    problems: list[ContentProblem] = []
    try:
        tokens = list(_ENV.lex(source))
    except TemplateSyntaxError as error:
        raise ContentError([_syntax(where, error.lineno, _("the text cannot be read as a template."))]) from None
    index = 0
    while index < len(tokens):
        line, kind, value = tokens[index]
        if kind == "data":
            index += 1
            continue
        if kind == "variable_begin":
            inner = []
            index += 1
            while index < len(tokens) and tokens[index][1] != "variable_end":
                if tokens[index][1] != "whitespace":
                    inner.append(tokens[index])
                index += 1
            if index == len(tokens):
                problems.append(_syntax(where, line, _("a merge field opened with {{ is not closed with }}.")))
                break
            end = tokens[index][2]
            index += 1
            if value != "{{" or end != "}}":
                problems.append(_syntax(where, line, _("whitespace control ({{- or -}}) is not allowed.")))
            elif len(inner) != 1 or inner[0][1] != "name":
                shown = "".join(token[2] for token in inner)[:40]
                problems.append(
                    _syntax(
                        where,
                        line,
                        _(
                            "{{ %(shown)s }} is not a merge field: no expressions, attributes, indexes, filters or "
                            "calls."
                        )
                        % {"shown": shown},
                    )
                )
            elif inner[0][2] not in PATIENT_FIELDS:
                problems.append(
                    ContentProblem(
                        "unknown_field",
                        _("%(where)s, line %(line)s: {{ %(name)s }} is not a merge field. The merge fields are %(fields)s.")
                        % {"where": where, "line": line, "name": inner[0][2], "fields": _FIELD_LIST},
                    )
                )
            elif inner[0][2] not in used:
                used.append(inner[0][2])
            continue
        problems.append(
            _syntax(
                where,
                line,
                _("%(opener)s … is not allowed (no statements or comments).") % {"opener": _OPENERS.get(kind, value)},
            )
        )
        break  # the rest of the stream belongs to the refused construct
    if problems:
        raise ContentError(problems)
    # A second, independent check on the parsed tree: only text and plain names of merge fields.
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as error:
        raise ContentError([_syntax(where, error.lineno, _("the text cannot be read as a template."))]) from None
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED_NODES) or (
            isinstance(node, nodes.Name) and (node.ctx != "load" or node.name not in PATIENT_FIELDS)
        ):
            raise ContentError([_syntax(where, getattr(node, "lineno", 1), _("this construct is not allowed."))])
    return tuple(used)


@functools.lru_cache(maxsize=512)
def _compiled(source: str):
    return _ENV.from_string(source)


def template_render(source: str, *, where: str, values: dict[str, str]) -> str:
    """`source` with each merge field replaced by `values[field]`, after `template_fields` accepted it."""
    fields = template_fields(source, where=where)
    if not fields:
        return source
    return _compiled(source).render({name: values[name] for name in fields})


# --- HTML for email: sanitising, CSS, text form ----------------------------------------------------------

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "code", "col", "colgroup", "dd", "div", "dl", "dt",
    "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "small", "span",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "*": {"style", "align", "dir", "lang", "title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "table": {"width", "cellpadding", "cellspacing", "border", "role"},
    "td": {"colspan", "rowspan", "valign", "width"},
    "th": {"colspan", "rowspan", "valign", "width", "scope"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start"},
}
# Properties mail clients honour that cannot load anything or move content out of its box.
_STYLE_PROPERTIES = {
    "background-color", "border", "border-bottom", "border-collapse", "border-color", "border-left",
    "border-radius", "border-right", "border-spacing", "border-style", "border-top", "border-width", "color",
    "display", "font", "font-family", "font-size", "font-style", "font-weight", "height", "letter-spacing",
    "line-height", "list-style-type", "margin", "margin-bottom", "margin-left", "margin-right", "margin-top",
    "max-width", "min-width", "padding", "padding-bottom", "padding-left", "padding-right", "padding-top",
    "text-align", "text-decoration", "text-transform", "vertical-align", "white-space", "width",
}  # fmt: skip
_URL_SCHEMES = {"https", "mailto", "tel"}
_CLEAN_OPTIONS = {
    "tags": _TAGS,
    "clean_content_tags": {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math"},
    "url_schemes": _URL_SCHEMES,
    "filter_style_properties": _STYLE_PROPERTIES,
    "link_rel": None,  # rel is meaningless in a mail client; adding it would change approved HTML
    "strip_comments": True,
}


def html_sanitise(fragment: str, *, keep_classes: bool = False) -> str:
    """An HTML fragment with only what email needs: the tags and attributes above, https/mailto/tel links,
    safe CSS properties; no script, style, event handler, form or javascript: URL. `keep_classes` keeps class
    attributes (library items, so that a template's stylesheet can address them); the final message has none."""
    attributes = {tag: set(names) for tag, names in _ATTRIBUTES.items()}
    if keep_classes:
        attributes["*"] = attributes["*"] | {"class"}
    return nh3.clean(fragment, attributes=attributes, **_CLEAN_OPTIONS)


_CSS_REFUSED = re.compile(
    r"@import|url\s*\(|expression\s*\(|javascript:|behaviou?r\s*:|-moz-binding|</|<!--|\{\{|\{%", re.IGNORECASE
)


def css_problems(css: str) -> list[ContentProblem]:
    """A template's stylesheet may not load anything or hide markup: no @import, url(), expression(), HTML."""
    found = sorted({match.group(0).lower() for match in _CSS_REFUSED.finditer(css)})
    if not found:
        return []
    return [
        ContentProblem(
            "css",
            _("Stylesheet: %(found)s is not allowed (nothing may be loaded from elsewhere).") % {"found": ", ".join(found)},
        )
    ]


def css_inline_fragment(fragment: str, css: str) -> str:
    """The template's stylesheet written into style attributes (mail clients drop <style>); nothing is fetched."""
    if not css.strip():
        return fragment
    return css_inline.inline_fragment(
        fragment,
        css,
        inline_style_tags=False,
        keep_style_tags=False,
        keep_link_tags=False,
        load_remote_stylesheets=False,
        keep_at_rules=False,
    )


_BLOCK_TAGS = {
    "address", "blockquote", "center", "div", "dl", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "ol", "p", "pre", "table", "tr", "ul", "caption",
}  # fmt: skip


class _TextWriter(HTMLParser):
    """A readable plain-text rendering of sanitised HTML: paragraphs, line breaks, list items, links as
    "text (URL)", images as their alt text, table cells side by side."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.links: list[str | None] = []
        self.link_text_start: list[int] = []
        self.pre = 0

    def _break(self, count: int = 2) -> None:
        self.out.append("\n" * count)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in _BLOCK_TAGS:
            self._break()
        if tag == "pre":
            self.pre += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append("  ")
        elif tag == "hr":
            self.out.append("----")
            self._break()
        elif tag == "img" and attributes.get("alt"):
            self.out.append(attributes["alt"])
        elif tag == "a":
            self.links.append(attributes.get("href"))
            self.link_text_start.append(len(self.out))

    def handle_endtag(self, tag):
        if tag == "a" and self.links:
            href, start = self.links.pop(), self.link_text_start.pop()
            text = "".join(self.out[start:]).strip()
            if href and href.startswith("mailto:"):
                href = href[len("mailto:") :]
            if href and href != text:
                self.out.append(f" ({href})")
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in _BLOCK_TAGS:
            self._break()

    def handle_data(self, data):
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        joined = "".join(self.out)
        lines = [line.strip() for line in joined.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(fragment: str) -> str:
    writer = _TextWriter()
    writer.feed(fragment)
    writer.close()
    return writer.text()


def text_to_html(text: str) -> str:
    """Plain text as HTML paragraphs: escaped, a blank line starts a paragraph, a line break stays one."""
    paragraphs = re.split(r"\n{2,}", text.replace("\r\n", "\n").replace("\r", "\n").strip())
    return "".join(
        "<p>" + html.escape(paragraph, quote=False).replace("\n", "<br>") + "</p>"
        for paragraph in paragraphs
        if paragraph
    )


def library_html_clean(source: str, *, where: str) -> str:
    """HTML of a library item as it is stored: merge fields checked, sanitised (classes kept for the stylesheet).
    Merge fields survive sanitising untouched, even inside attributes: they are swapped for placeholders first."""
    fields = template_fields(source, where=where)
    placeholders = {name: "hmf" + secrets.token_hex(16) for name in fields}
    cleaned = html_sanitise(template_render(source, where=where, values=placeholders), keep_classes=True)
    for name, placeholder in placeholders.items():
        cleaned = cleaned.replace(placeholder, "{{ %s }}" % name)
    template_fields(cleaned, where=where)  # sanitising must not have made new template syntax
    return cleaned


# --- A campaign's content ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignContent:
    """What a campaign sends, saved or not (the editor previews unsaved content)."""

    purpose: Purpose
    subject: str
    intro_text: str = ""
    template: EmailTemplate | None = None
    blocks: tuple[ContentBlock, ...] = ()


def content_of(campaign) -> CampaignContent:
    blocks = (
        tuple(
            use.block
            for use in CampaignBlock.objects.filter(campaign_id=campaign.pk)
            .select_related("block")
            .order_by("position")
        )
        if campaign.pk
        else ()
    )
    return CampaignContent(
        purpose=campaign.purpose,
        subject=campaign.subject,
        intro_text=campaign.body_text,
        template=campaign.template,
        blocks=blocks,
    )


def _sources(content: CampaignContent) -> list[tuple[str, str, str, str]]:
    """(where, kind, section, source) of each templated part in reading order: kind "html" or "text", section
    "header", "content" or "footer"."""
    parts: list[tuple[str, str, str, str]] = []
    template = content.template
    if template is not None and template.header_html:
        where = _("Template \u201c%(name)s\u201d header") % {"name": template.name}
        parts.append((where, "html", "header", template.header_html))
    if content.intro_text:
        parts.append((_("Introduction"), "text", "content", content.intro_text))
    for position, block in enumerate(content.blocks, start=1):
        where = _("Block %(position)s \u201c%(name)s\u201d") % {"position": position, "name": block.name}
        parts.append((where, "html", "content", block.html))
    if template is not None and template.footer_html:
        where = _("Template \u201c%(name)s\u201d footer") % {"name": template.name}
        parts.append((where, "html", "footer", template.footer_html))
    return parts


def merge_fields_allowed(*, purpose_id: int) -> tuple[tuple[str, ...], object]:
    """R-SEND-SCOPE: the merge fields the purpose's current published form lists, and that form (or None)."""
    form = form_version_current(purpose_id=purpose_id)
    return (tuple(form.merge_fields) if form is not None else ()), form


def content_fields(content: CampaignContent) -> tuple[tuple[str, ...], list[ContentProblem]]:
    """The merge fields the content uses, and its syntax problems (the subject may use none: R-NO-PHI-LEAK)."""
    used: list[str] = []
    problems: list[ContentProblem] = []
    try:
        if template_fields(content.subject, where=_("Subject")):
            problems.append(
                ContentProblem(
                    "subject_merge_field",
                    _(
                        "Subject: merge fields are not allowed in the subject. Subjects show in inbox lists and "
                        "notifications, so no patient information goes there."
                    ),
                )
            )
    except ContentError as error:
        problems.extend(error.problems)
    for where, _kind, _section, source in _sources(content):
        try:
            used.extend(name for name in template_fields(source, where=where) if name not in used)
        except ContentError as error:
            problems.extend(error.problems)
    return tuple(used), problems


# `_scope_problem(form=GIVEN)`: the caller chose the allowed fields (`content_render(allowed_fields=...)`), so
# there is no form to name.
GIVEN = object()


def _scope_problem(*, purpose: Purpose, outside: list[str], allowed: Collection[str], form) -> ContentProblem:
    """`form`: the purpose's current form, None when it has none, or GIVEN when the caller chose `allowed`."""
    names = ", ".join("{{ %s }}" % name for name in outside)
    listed = ", ".join("{{ %s }}" % name for name in allowed) or pgettext("merge fields", "none")
    if form is GIVEN:
        reason = _("this message allows only: %(listed)s") % {"listed": listed}
    elif form is None:
        reason = _(
            "the purpose \u201c%(purpose)s\u201d has no published authorization form, so no merge field may be used"
        ) % {"purpose": purpose.name}
    else:
        reason = ngettext(
            "the authorization form for \u201c%(purpose)s\u201d (version %(version)s) does not list it; "
            "this purpose allows only: %(listed)s",
            "the authorization form for \u201c%(purpose)s\u201d (version %(version)s) does not list them; "
            "this purpose allows only: %(listed)s",
            len(outside),
        ) % {"purpose": purpose.name, "version": form.version, "listed": listed}
    message = ngettext(
        "The content uses %(names)s, but %(reason)s. A message may use only the information the authorization "
        "describes (HIPAA, 45 CFR 164.508(c)(1)(i)). Remove it, or ask a compliance officer about the form.",
        "The content uses %(names)s, but %(reason)s. A message may use only the information the authorization "
        "describes (HIPAA, 45 CFR 164.508(c)(1)(i)). Remove them, or ask a compliance officer about the form.",
        len(outside),
    ) % {"names": names, "reason": reason}
    return ContentProblem("merge_field_out_of_scope", message, tuple(outside))


def block_allowed_for(block: ContentBlock, *, purpose_id: int) -> bool:
    """Whether a block may be used in a campaign for the purpose: its purposes list it, or it lists none (every
    purpose). Reads `block.purposes` through a prefetch when there is one."""
    allowed = {purpose.pk for purpose in block.purposes.all()}
    return not allowed or purpose_id in allowed


def content_blocks_allowed(*, purpose_id: int):
    """The approved blocks a campaign for the purpose may use, by name: THE list every editor offers
    (campaigns.forms.editor) and the library of the wizard's content step shows."""
    return (
        ContentBlock.objects.filter(status=ContentStatus.APPROVED)
        .filter(Q(purposes__isnull=True) | Q(purposes=purpose_id))
        .distinct()
        .prefetch_related("purposes")
        .order_by("name", "id")
    )


def block_purpose_problems(content: CampaignContent) -> list[ContentProblem]:
    """Each block of the content that is not approved for the content's purpose (issue 17: a CPAP block in a diabetes
    campaign). Unsaved purposes (a preview before one is chosen) have no problem of this kind."""
    if content.purpose.pk is None:
        return []
    return [
        ContentProblem(
            "block_wrong_purpose",
            _(
                "Block %(position)s \u201c%(name)s\u201d is not approved for \u201c%(purpose)s\u201d: "
                "remove it, or choose a block approved for this purpose."
            )
            % {"position": position, "name": block.name, "purpose": content.purpose.name},
        )
        for position, block in enumerate(content.blocks, start=1)
        if block.pk is not None and not block_allowed_for(block, purpose_id=content.purpose.pk)
    ]


def content_problems(content: CampaignContent) -> list[ContentProblem]:
    """Everything that stops content from being submitted: template syntax, merge fields the purpose's current
    form does not list (R-SEND-SCOPE), a template or block that is not approved (retired since it was picked), a
    block not approved for the purpose,
    nothing to send."""
    used, problems = content_fields(content)
    if used:
        allowed, form = merge_fields_allowed(purpose_id=content.purpose.pk)
        outside = [name for name in used if name not in allowed]
        if outside:
            problems.append(_scope_problem(purpose=content.purpose, outside=outside, allowed=allowed, form=form))
    if content.template is not None and content.template.status != ContentStatus.APPROVED:
        problems.append(
            ContentProblem(
                "template_not_approved",
                _("The template \u201c%(name)s\u201d is %(status)s: choose an approved one.")
                % {"name": content.template.name, "status": content.template.get_status_display().lower()},
            )
        )
    for position, block in enumerate(content.blocks, start=1):
        if block.status != ContentStatus.APPROVED:
            problems.append(
                ContentProblem(
                    "block_not_approved",
                    _("Block %(position)s \u201c%(name)s\u201d is %(status)s: remove it or choose an approved block.")
                    % {"position": position, "name": block.name, "status": block.get_status_display().lower()},
                )
            )
    problems.extend(block_purpose_problems(content))
    problems.extend(subject_problems(content.subject))
    if not content.intro_text.strip() and not content.blocks:
        problems.append(
            ContentProblem("content_empty", _("There is nothing to send: write an introduction or add a block."))
        )
    return problems


# A subject may not pretend to be a reply or a forward of a conversation the patient had (R-CANSPAM-HEADERS).
_SUBJECT_CONVERSATION = re.compile(r"^\s*(re|fw|fwd|aw|wg|tr)\s*(\[\d+\])?\s*:", re.IGNORECASE)


def subject_problems(subject: str) -> list[ContentProblem]:
    """R-CANSPAM-HEADERS (15 U.S.C. 7704(a)(2)): a subject that would mislead a recipient about the message is
    refused: one dressed as a reply or forward ("Re:", "Fwd:") of a conversation that never took place."""
    problems = []
    if _SUBJECT_CONVERSATION.match(subject):
        problems.append(
            ContentProblem(
                "subject_deceptive",
                _(
                    "Subject: do not start it with \u201cRe:\u201d or \u201cFwd:\u201d. It is not a reply or a forward, "
                    "and a subject that pretends to be one is deceptive under CAN-SPAM."
                ),
            )
        )
    return problems


@dataclass(frozen=True)
class RenderedContent:
    """A campaign's content rendered once: `html` (a sanitised, CSS-inlined fragment) and `text`, with
    `placeholders[field]` where each recipient's value goes."""

    html: str
    text: str
    placeholders: dict[str, str] = field(default_factory=dict)

    def fill(self, values: dict[str, str]) -> tuple[str, str]:
        """(html, text) with `values` in place of the placeholders: escaped in HTML, plain in text. The sender
        does the same per recipient in campaigns.sending.messages.CampaignRender.assemble."""
        html_out, text_out = self.html, self.text
        for name, placeholder in self.placeholders.items():
            value = " ".join(str(values.get(name, "")).split())
            html_out = html_out.replace(placeholder, html.escape(value))
            text_out = text_out.replace(placeholder, value)
        return html_out, text_out


def content_render(content: CampaignContent, *, allowed_fields: Collection[str] | None = None) -> RenderedContent:
    """Render once per batch. `allowed_fields` None: the purpose's current form decides (R-SEND-SCOPE), looked up
    only when the content uses a merge field. Raises ContentError rather than send content outside its scope."""
    used, problems = content_fields(content)
    if used and not problems:
        if allowed_fields is None:
            allowed, form = merge_fields_allowed(purpose_id=content.purpose.pk)
        else:
            allowed, form = tuple(allowed_fields), GIVEN
        outside = [name for name in used if name not in allowed]
        if outside:
            problems.append(_scope_problem(purpose=content.purpose, outside=outside, allowed=allowed, form=form))
    if problems:
        raise ContentError(problems)
    placeholders = {name: "hmf" + secrets.token_hex(16) for name in used}
    sections: dict[str, list[str]] = {"header": [], "content": [], "footer": []}
    texts = []
    for where, kind, section, source in _sources(content):
        rendered = template_render(source, where=where, values=placeholders)
        if kind == "text":
            sections[section].append(text_to_html(rendered))
            texts.append(rendered.strip())
            continue
        rendered = html_sanitise(rendered, keep_classes=True)  # stored clean; cleaned again, the rules may be newer
        sections[section].append(rendered)
        texts.append(html_to_text(rendered))
    # The classes a template's stylesheet can address; the final sanitising removes them once CSS is inlined.
    fragment = "".join(f'<div class="{name}">{"".join(parts)}</div>' for name, parts in sections.items() if parts)
    css = content.template.css if content.template is not None else ""
    if css_problems(css):
        raise ContentError(css_problems(css))
    fragment = html_sanitise(css_inline_fragment(fragment, css))
    return RenderedContent(html=fragment, text="\n\n".join(text for text in texts if text), placeholders=placeholders)


# --- Recipients' values ------------------------------------------------------------------------------------

# The patient column each merge field is computed from; condition codes come from their own table.
_FIELD_COLUMNS = {
    "first_name": "full_name",
    "last_name": "full_name",
    "email": "email",
    "postal_code": "postal_code",
    "state": "state",
    "birth_year": "birth_year",
    "last_visit": "last_visit",
}


def _field_value(name: str, row: dict) -> str:
    if name in ("first_name", "last_name"):
        parts = (row.get("full_name") or "").split()
        if not parts:
            return ""
        return parts[0] if name == "first_name" else (parts[-1] if len(parts) > 1 else "")
    if name == "last_visit":
        day = row.get("last_visit")
        return f"{day:%B} {day.day}, {day.year}" if day else ""
    value = row.get(_FIELD_COLUMNS[name])
    return "" if value is None else str(value)


def merge_values_for_deliveries(
    *,
    campaign_id: int,
    delivery_ids: Iterable[int] | None = None,
    from_delivery_id: int | None = None,
    fields: Collection[str],
    limit: int = 1000,
) -> dict[int, dict[str, str]]:
    """{delivery id: {field: value}} for the given deliveries of a campaign, or for up to `limit` of its queued
    deliveries from `from_delivery_id` on (a sending batch, in id order). One query, plus one for condition codes
    when used; only the columns the fields need are read, so only those are decrypted."""
    columns = sorted({_FIELD_COLUMNS[name] for name in fields if name in _FIELD_COLUMNS})
    rows = Delivery.objects.filter(campaign_id=campaign_id)
    if delivery_ids is not None:
        rows = rows.filter(pk__in=list(delivery_ids))
    else:
        rows = rows.filter(pk__gte=from_delivery_id, status=Delivery.Status.QUEUED).order_by("id")[:limit]
    records = list(rows.values("id", "patient_id", *(f"patient__{column}" for column in columns)))
    codes: dict[int, list[str]] = {}
    if "condition_codes" in fields and records:
        for patient_id, code in (
            PatientCondition.objects.filter(patient_id__in={record["patient_id"] for record in records})
            .order_by("patient_id", "code")
            .values_list("patient_id", "code")
        ):
            codes.setdefault(patient_id, []).append(code)
    values: dict[int, dict[str, str]] = {}
    for record in records:
        row = {column: record[f"patient__{column}"] for column in columns}
        recipient = {name: _field_value(name, row) for name in fields if name in _FIELD_COLUMNS}
        if "condition_codes" in fields:
            recipient["condition_codes"] = ", ".join(codes.get(record["patient_id"], []))
        values[record["id"]] = recipient
    return values
