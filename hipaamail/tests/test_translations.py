"""Every page a person reads can be read in Spanish (issue 17, item 6; ADR 0030).

Three checks that fail on the first untranslated string a change adds:
- no template shows text outside {% translate %} / {% blocktranslate %} (text nodes and the attributes people read:
  aria-label, title, placeholder, alt);
- every message a template, a Python module or a script uses is in a catalogue, translated;
- no Python module hands a person a bare literal: messages.*(), ValidationError(), a form field's label or help_text,
  a model's choices labels.

The catalogues: locale/es (what patients read) and <app>/locale/es (each app's staff pages), django.po and djangojs.po.
"""
import ast
import re
from functools import cache
from pathlib import Path

import pytest
from django.conf import settings

from consent.catalogue import catalogue_dirs, catalogue_paths, po_read

BASE = Path(settings.BASE_DIR)
TEMPLATES = BASE / "templates"
APPS = ["hipaamail", "accounts", "audit", "consent", "campaigns", "journeys", "api", "observability"]

# Words a Spanish page may show as they are: names and abbreviations that are the same in both languages.
SAME_IN_SPANISH = {
    "hipaamail", "CSV", "PDF", "FHIR", "HL7", "API", "SMTP", "URL", "JSON", "HIPAA", "CFR", "EHR", "ID", "TOTP",
    "HMAC", "SHA", "OK", "UTC", "CPAP", "HTTP", "HTTPS", "POST", "GET", "Webhook", "webhook", "webhooks", "Webhooks",
    "DKIM", "SPF", "ZIP", "MRN", "PHI", "eml", "ms", "px",
}
# Templates whose text is deliberately not translated, each with the reason.
NOT_TRANSLATED = {
    # Each link names its language in that language, so a reader of either can find theirs.
    "consent/portal/_language.html",
    "_language_switch.html",
}

_TAG = re.compile(r"{%.*?%}", re.S)
_VARIABLE = re.compile(r"{{.*?}}", re.S)
# Django's {# #} comment ends on its line (a multi-line one is shown as text); {% comment %} spans lines.
_COMMENT = re.compile(r"{#[^\n]*?#}|{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", re.S)
# A block that fills an attribute (base.html's {% block main_class %}) holds class names, not words.
_CLASS_BLOCK = re.compile(r"{%\s*block\s+\w*class\s*%}.*?{%\s*endblock\b.*?%}", re.S)
_BLOCKTRANSLATE = re.compile(r"{%\s*blocktranslate\b.*?{%\s*endblocktranslate\s*%}", re.S)
_SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.S | re.I)
_READ_ATTRIBUTE = re.compile(r"""\b(?:aria-label|title|placeholder|alt)\s*=\s*(["'])(.*?)\1""", re.S)
_HTML_TAG = re.compile(r"<[^>]*>", re.S)
_ENTITY = re.compile(r"&#?\w+;")
_WORD = re.compile(r"[A-Za-z][A-Za-z']+")


def _all_templates() -> list[Path]:
    return sorted(path for path in TEMPLATES.rglob("*") if path.is_file() and path.suffix in {".html", ".txt"})


def untranslated_words(source: str) -> list[str]:
    """The words of a template a person would read that no translate tag covers."""
    text = _COMMENT.sub(" ", source)
    text = _BLOCKTRANSLATE.sub(" ", text)
    text = _CLASS_BLOCK.sub(" ", text)
    text = _SCRIPT_OR_STYLE.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _VARIABLE.sub(" ", text)
    read = [match.group(2) for match in _READ_ATTRIBUTE.finditer(text)]
    text = _HTML_TAG.sub(" ", text)
    text = _ENTITY.sub(" ", " ".join([text, *read]))
    return [word for word in _WORD.findall(text) if word not in SAME_IN_SPANISH]


def test_template_messages_are_the_msgids_django_looks_up():
    assert template_messages('{% translate "Remove" context "journey step" %}') == ["Remove"]
    assert template_messages("{% blocktranslate trimmed with n=x %}\n  {{ n }} %\n  sent{% endblocktranslate %}") == [
        "%(n)s %% sent"
    ]
    assert template_messages("{% blocktranslate count n=x %}{{ n }} day{% plural %}{{ n }} days{% endblocktranslate %}") == [
        "%(n)s day", "%(n)s days"
    ]


def test_the_check_finds_bare_text_and_passes_translated_text():
    assert untranslated_words("<h1>Campaigns</h1>") == ["Campaigns"]
    assert untranslated_words('<a aria-label="Close the menu" href="{{ url }}">x</a>') == ["Close", "the", "menu"]
    assert untranslated_words('<h1>{% translate "Campaigns" %}</h1>{{ campaign.name }} · CSV') == []
    assert untranslated_words("{% blocktranslate %}Hello {{ name }}{% endblocktranslate %}{# a note #}") == []
    assert untranslated_words("{# a note that\n goes on #}") == ["note", "that", "goes", "on"]
    assert untranslated_words('<a title="{% translate \'Open\' %}">{{ n }}</a><script>let a = "x y";</script>') == []


@pytest.mark.parametrize(
    "template",
    [path for path in _all_templates() if str(path.relative_to(TEMPLATES)) not in NOT_TRANSLATED],
    ids=lambda path: str(path.relative_to(TEMPLATES)),
)
def test_no_template_shows_untranslated_text(template):
    assert untranslated_words(template.read_text(encoding="utf-8")) == []


@cache
def _catalogue() -> dict[str, bool]:
    """Every msgid of every catalogue of ours (both domains), and whether it is translated."""
    known: dict[str, bool] = {}
    for locale_dir in catalogue_dirs():
        for po_path in catalogue_paths(locale_dir):
            if po_path.parent.parent.name != "es":
                continue
            for entry in po_read(po_path):
                for msgid in filter(None, (entry.msgid, entry.msgid_plural)):
                    known[msgid] = known.get(msgid, False) or entry.translated
    return known


def template_messages(text: str) -> list[str]:
    """The msgids a template's {% translate %} and {% blocktranslate %} tags make, as Django looks them up."""
    messages = [
        match.group(2)
        for match in re.finditer(
            r"{%\s*translate\s+([\"'])(.*?)\1(?:\s+context\s+([\"']).*?\3)?(?:\s+as\s+\w+)?\s*%}", text
        )
    ]
    for match in re.finditer(r"{%\s*blocktranslate([^%]*)%}(.*?){%\s*endblocktranslate\s*%}", text, re.S):
        body = match.group(2)
        trimmed = "trimmed" in match.group(1)
        for part in re.split(r"{%\s*plural\s*%}", body):
            part = part.replace("%", "%%")  # as Django's blocktranslate looks a literal % up
            part = re.sub(r"{{\s*(\w+)\s*}}", r"%(\1)s", part)
            if trimmed:
                part = " ".join(line.strip() for line in part.strip().splitlines())
            messages.append(part)
    return messages


@pytest.mark.parametrize("template", _all_templates(), ids=lambda path: str(path.relative_to(TEMPLATES)))
def test_every_message_of_a_template_is_translated(template):
    known = _catalogue()
    missing = [message for message in template_messages(template.read_text(encoding="utf-8"))
               if not known.get(message)]
    assert missing == []


_GETTEXT_NAMES = {"gettext", "gettext_lazy", "_", "ngettext", "ngettext_lazy", "pgettext", "pgettext_lazy",
                  "npgettext", "npgettext_lazy"}
_FIELD_KEYWORDS = {"label", "help_text", "empty_label"}
_MESSAGE_LEVELS = {"success", "error", "info", "warning", "debug", "add_message"}


def _python_modules() -> list[Path]:
    modules = []
    for app in APPS:
        for path in sorted((BASE / app).rglob("*.py")):
            parts = set(path.relative_to(BASE).parts)
            if parts & {"tests", "migrations", "management", "locale"}:
                continue
            modules.append(path)
    return modules


def _literal(node) -> bool:
    """A string a person would read, written as a literal: "Text" or f"Text {x}" (not "", not a gettext call)."""
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(re.search(r"[A-Za-z]", node.value))


def _gettext_calls(tree) -> list[str]:
    messages = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in _GETTEXT_NAMES:
            arguments = node.args[1:] if getattr(node.func, "id", "").startswith(("pgettext", "npgettext")) else node.args
            for argument in arguments[:2]:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    messages.append(argument.value)
    return messages


def bare_literals(source: str) -> list[str]:
    """Where a module hands a person a literal string that no gettext call wraps: line and text."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            owner = getattr(getattr(node.func, "value", None), "id", None)
            arguments = []
            if owner == "messages" and name in _MESSAGE_LEVELS:
                arguments = node.args[1:2] if name != "add_message" else node.args[2:3]
                arguments += [keyword.value for keyword in node.keywords if keyword.arg == "message"]
            elif name == "ValidationError":
                arguments = node.args[:1] + [keyword.value for keyword in node.keywords if keyword.arg == "message"]
            elif name == "add_error":
                arguments = node.args[1:2]
            arguments += [keyword.value for keyword in node.keywords if keyword.arg in _FIELD_KEYWORDS]
            found += [f"{argument.lineno}: {ast.unparse(argument)[:70]}" for argument in arguments if _literal(argument)]
        if isinstance(node, ast.ClassDef) and any(
            getattr(base, "attr", getattr(base, "id", "")) in {"TextChoices", "IntegerChoices"} for base in node.bases
        ):
            for statement in node.body:
                value = getattr(statement, "value", None)
                if isinstance(statement, ast.Assign) and isinstance(value, ast.Tuple) and len(value.elts) > 1:
                    if _literal(value.elts[-1]):
                        found.append(f"{statement.lineno}: choice label {ast.unparse(value.elts[-1])[:70]}")
    return found


def test_the_python_check_finds_bare_literals_and_passes_wrapped_ones():
    assert bare_literals('messages.success(request, "Campaign saved.")') == ["1: 'Campaign saved.'"]
    assert bare_literals('raise ValidationError(f"Too big: {n}")')[0].startswith("1: f'Too big")
    assert bare_literals('forms.CharField(label="Your name")') == ["1: 'Your name'"]
    assert bare_literals("class S(models.TextChoices):\n    DRAFT = 'draft', 'Draft'\n") == ["2: choice label 'Draft'"]
    assert bare_literals('messages.success(request, _("Campaign saved."))') == []
    assert bare_literals("class S(models.TextChoices):\n    DRAFT = 'draft', _('Draft')\n") == []


@pytest.mark.parametrize("module", _python_modules(), ids=lambda path: str(path.relative_to(BASE)))
def test_no_module_hands_a_person_a_bare_literal(module):
    assert bare_literals(module.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("module", _python_modules(), ids=lambda path: str(path.relative_to(BASE)))
def test_every_message_of_a_module_is_translated(module):
    known = _catalogue()
    messages = _gettext_calls(ast.parse(module.read_text(encoding="utf-8")))
    assert [message for message in messages if not known.get(message)] == []



def _scripts() -> list[Path]:
    """Our scripts; static/jsi18n/ holds the catalogues messages_compile writes (Django's code and every app's words)."""
    return sorted(path for path in (BASE / "static").rglob("*.js") if "jsi18n" not in path.parts)


@pytest.mark.parametrize("script", _scripts(), ids=lambda path: str(path.relative_to(BASE)))
def test_every_message_of_a_script_is_translated(script):
    """Scripts take their words from the JavaScript catalogue (static/jsi18n/): gettext("…") and ngettext("…", "…", n)."""
    known = _catalogue()
    text = script.read_text(encoding="utf-8")
    messages = [match.group(2) for match in re.finditer(r"\b(?:gettext|ngettext)\(\s*([\"'])(.*?)(?<!\\)\1", text)]
    messages += [match.group(2) for match in re.finditer(r"\bngettext\([^,]+,\s*([\"'])(.*?)(?<!\\)\1", text)]
    assert [message for message in messages if not known.get(message)] == []


_JS_STRING = re.compile(r"""(?<![\w.])(?:(gettext|ngettext|interpolate)\(\s*)?(["'`])((?:(?!\2)[^\\\n]|\\.)*)\2""")


_JS_COMMENT = re.compile(r"^[ \t]*//[^\n]*|/\*.*?\*/", re.M | re.S)


def script_bare_sentences(text: str) -> list[str]:
    """String literals of a script that read as words to a person ("Sent to 3 people") and no gettext() wraps."""
    bare = []
    for match in _JS_STRING.finditer(_JS_COMMENT.sub(" ", text)):
        wrapped, value = match.group(1), match.group(3)
        if not wrapped and " " in value and re.fullmatch(r"[A-Z][a-z']*(?:[ ,.:;!?()-]+[A-Za-z0-9'%${}]+)+[.:!?…]?", value):
            bare.append(value)
    return bare


def test_the_script_check_finds_bare_sentences():
    assert script_bare_sentences('el.textContent = "That code did not work.";') == ["That code did not work."]
    assert script_bare_sentences('el.textContent = gettext("That code did not work.");') == []
    assert script_bare_sentences('document.querySelector("input[name=code]"); x.classList.add("is-open")') == []
    assert script_bare_sentences('// the "Verify the chain now" button\nheaders["X-CSRFToken"] = token;') == []


@pytest.mark.parametrize("script", _scripts(), ids=lambda path: str(path.relative_to(BASE)))
def test_no_script_shows_an_untranslated_sentence(script):
    assert script_bare_sentences(script.read_text(encoding="utf-8")) == []
