"""The Spanish message catalogue (issue 17, item 6; ADR 0025): every message translated, the committed .mo exactly the
.po compiled, every string of the patient's pages, mail and signed copy in the catalogue, and Spanish served."""
import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from consent.catalogue import mo_bytes, po_read

LOCALE = Path(settings.BASE_DIR) / "locale"
SPANISH_PO = LOCALE / "es" / "LC_MESSAGES" / "django.po"
TEMPLATES = Path(settings.BASE_DIR) / "templates"
# What a patient reads: every template of these is checked string by string.
PATIENT_TEMPLATES = [
    *sorted((TEMPLATES / "consent" / "portal").glob("*.html")),
    *sorted((TEMPLATES / "consent" / "email").glob("*")),
    TEMPLATES / "consent" / "pdf" / "authorization.html",
    *sorted((TEMPLATES / "campaigns").glob("unsubscribe_*.html")),
]


def _entries():
    return [entry for entry in po_read(SPANISH_PO) if entry.msgid]


def test_every_message_in_the_catalogue_has_a_spanish_translation():
    """No empty msgstr, no fuzzy entry: a new string cannot ship untranslated."""
    entries = _entries()
    assert len(entries) > 150
    untranslated = [entry.msgid for entry in entries if not entry.translated]
    assert untranslated == []


def test_the_committed_mo_is_the_po_compiled():
    """Run `manage.py messages_compile` after editing the .po (ADR 0025)."""
    entries = po_read(SPANISH_PO)
    assert SPANISH_PO.with_suffix(".mo").read_bytes() == mo_bytes(entries)
    catalog = gettext.GNUTranslations(SPANISH_PO.with_suffix(".mo").open("rb"))
    assert catalog.gettext("There is a problem") == "Hay un problema"


def test_placeholders_survive_translation():
    """A translation keeps every %(name)s of its message, or formatting it fails on a patient's page."""
    for entry in _entries():
        placeholders = sorted(re.findall(r"%\(\w+\)s", entry.msgid))
        for translated in entry.msgstr:
            assert sorted(re.findall(r"%\(\w+\)s", translated)) == placeholders, entry.msgid


def _template_messages(text: str) -> list[str]:
    """The msgids a template's {% translate %} and {% blocktranslate %} tags make, as makemessages extracts them."""
    messages = [
        match.group(2) for match in re.finditer(r"{%\s*translate\s+([\"'])(.*?)\1\s*%}", text)
    ]
    for match in re.finditer(r"{%\s*blocktranslate([^%]*)%}(.*?){%\s*endblocktranslate\s*%}", text, re.S):
        body = re.sub(r"{{\s*(\w+)\s*}}", r"%(\1)s", match.group(2))
        if "trimmed" in match.group(1):
            body = " ".join(line.strip() for line in body.strip().splitlines())
        messages.append(body)
    return messages


@pytest.mark.parametrize("template", PATIENT_TEMPLATES, ids=lambda path: str(path.relative_to(TEMPLATES)))
def test_every_string_a_patient_reads_is_in_the_catalogue(template):
    known = {entry.msgid for entry in _entries()}
    text = template.read_text(encoding="utf-8")
    missing = [message for message in _template_messages(text) if message not in known]
    assert missing == []


def test_django_serves_the_spanish_catalogue():
    with translation.override("es"):
        assert translation.gettext("Sign the form") == "Firmar el formulario"
    with translation.override("en"):
        assert translation.gettext("Sign the form") == "Sign the form"
    assert settings.LANGUAGES == [("en", "English"), ("es", "Español")]
    assert "django.middleware.locale.LocaleMiddleware" in settings.MIDDLEWARE


def test_the_committed_javascript_catalogues_are_the_djangojs_catalogues_as_django_writes_them():
    """static/jsi18n/<language>.js (ADR 0030): run `manage.py messages_compile` after editing a djangojs.po."""
    from consent.catalogue import javascript_catalogue_path, javascript_catalogue_source

    for language, _name in settings.LANGUAGES:
        assert javascript_catalogue_path(language).read_text(encoding="utf-8") == javascript_catalogue_source(language)
    assert "Verificando" in javascript_catalogue_path("es").read_text(encoding="utf-8")
