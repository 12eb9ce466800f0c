"""The message catalogue (locale/<language>/LC_MESSAGES/django.po) read and compiled in pure Python (ADR 0025).

Django's compilemessages runs GNU msgfmt, which a fresh machine may not have. The compiled django.mo is committed
beside its .po, so a fresh clone runs in Spanish with no tool at all; `manage.py messages_compile` writes it again
from the .po after a translator's change, with this module, and a test checks that the committed .mo is the .po
compiled and that every message has a translation (consent/tests/test_catalogue.py).

Only what our catalogues use is read: msgctxt, msgid, msgid_plural, msgstr and msgstr[n], comments and flags.
"""
import ast
import struct
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: list[str] = field(default_factory=list)  # one, or one per plural form
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def key(self) -> str:
        key = self.msgid if self.msgid_plural is None else f"{self.msgid}\x00{self.msgid_plural}"
        return key if self.msgctxt is None else f"{self.msgctxt}\x04{key}"

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr) and "fuzzy" not in self.flags


def _string(line: str) -> str:
    return ast.literal_eval(line)  # a C-style quoted string; our catalogues use only \\n, \\", \\\\ and \\t


def po_read(path: Path) -> list[Entry]:
    """The entries of a .po file, the header (msgid "") first."""
    entries: list[Entry] = []
    entry = Entry()
    target: tuple[str, int | None] | None = None
    started = False

    def finish():
        nonlocal entry, started
        if started:
            entries.append(entry)
        entry, started = Entry(), False

    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            finish()
            target = None
            continue
        if line.startswith("#~"):
            entry.obsolete = True
            continue
        if line.startswith("#,"):
            entry.flags |= {flag.strip() for flag in line[2:].split(",") if flag.strip()}
            continue
        if line.startswith("#"):
            continue
        if line.startswith('"'):
            name, index = target
            if name == "msgstr":
                entry.msgstr[index] += _string(line)
            else:
                setattr(entry, name, getattr(entry, name) + _string(line))
            continue
        keyword, _, value = line.partition(" ")
        if keyword == "msgctxt" or (keyword == "msgid" and started and entry.msgstr):
            finish()
        started = True
        if keyword.startswith("msgstr"):
            index = int(keyword[7:-1]) if keyword.startswith("msgstr[") else 0
            while len(entry.msgstr) <= index:
                entry.msgstr.append("")
            entry.msgstr[index] = _string(value)
            target = ("msgstr", index)
        else:
            setattr(entry, keyword, _string(value))
            target = (keyword, None)
    finish()
    return [entry for entry in entries if not entry.obsolete]


def mo_bytes(entries: list[Entry]) -> bytes:
    """The GNU .mo file of the translated entries (and the header), as msgfmt writes it, without a hash table."""
    messages = {entry.key: "\x00".join(entry.msgstr) for entry in entries if entry.translated or entry.msgid == ""}
    keys = sorted(messages)
    ids = [key.encode("utf-8") for key in keys]
    strs = [messages[key].encode("utf-8") for key in keys]
    count = len(keys)
    header_size = 7 * 4
    ids_table = header_size
    strs_table = ids_table + count * 8
    data_start = strs_table + count * 8
    offsets: list[tuple[int, int]] = []
    data = b""
    for item in ids + strs:
        offsets.append((len(item), data_start + len(data)))
        data += item + b"\x00"
    output = struct.pack("<7I", 0x950412DE, 0, count, ids_table, strs_table, 0, data_start)
    for length, offset in offsets:
        output += struct.pack("<2I", length, offset)
    return output + data


def catalogue_paths(locale_dir: Path) -> list[Path]:
    """The catalogues of one locale directory: django.po (templates and Python) and djangojs.po (static/js)."""
    return sorted(Path(locale_dir).glob("*/LC_MESSAGES/django*.po"))


def catalogue_dirs() -> list[Path]:
    """Every locale directory of ours: the project's (LOCALE_PATHS: what patients read) first, then each of our apps'
    (its staff pages, ADR 0030), in the order Django merges them. Third-party apps' catalogues are not ours to compile."""
    from django.apps import apps
    from django.conf import settings

    base = Path(settings.BASE_DIR).resolve()
    dirs = [Path(path) for path in settings.LOCALE_PATHS]
    for config in apps.get_app_configs():
        locale = Path(config.path).resolve() / "locale"
        if locale.is_dir() and locale.parent.parent == base and locale not in dirs:  # a top-level app of this repo
            dirs.append(locale)
    return dirs


def catalogue_compile(po_path: Path) -> Path:
    """Write the .mo beside a .po; returns its path."""
    mo_path = Path(po_path).with_suffix(".mo")
    mo_path.write_bytes(mo_bytes(po_read(po_path)))
    return mo_path


def javascript_catalogue_source(language: str) -> str:
    """The JavaScript catalogue of one language (gettext, ngettext, interpolate and the djangojs messages of every
    app of ours), as Django's JavaScriptCatalog writes it. messages_compile keeps it as static/jsi18n/<language>.js
    (ADR 0030): a static file costs no request to Django, and no session write, on every page."""
    from django.test import RequestFactory
    from django.utils import translation
    from django.views.i18n import JavaScriptCatalog

    with translation.override(language):
        response = JavaScriptCatalog.as_view()(RequestFactory().get("/"))
    return response.content.decode("utf-8")


def javascript_catalogue_path(language: str) -> Path:
    from django.conf import settings

    return Path(settings.BASE_DIR) / "static" / "jsi18n" / f"{language}.js"
