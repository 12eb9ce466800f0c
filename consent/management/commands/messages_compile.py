"""Compile every message catalogue of ours to its .mo in pure Python (ADR 0025): no GNU gettext needed.

    python manage.py messages_compile

The catalogues: locale/es (what patients read) and each app's <app>/locale/es (its staff pages, ADR 0030), django.po
and djangojs.po. A new string goes, translated, into the catalogue of the app whose page uses it;
hipaamail/tests/test_translations.py names every string a page uses that no catalogue has. Then run this and commit
the .po and the .mo together."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from consent.catalogue import (
    catalogue_compile,
    catalogue_dirs,
    catalogue_paths,
    javascript_catalogue_path,
    javascript_catalogue_source,
    po_read,
)


class Command(BaseCommand):
    help = "Compile the .po message catalogues to .mo files without GNU gettext."

    def handle(self, *args, **options):
        for locale_dir in catalogue_dirs():
            for po_path in catalogue_paths(Path(locale_dir)):
                missing = [entry.msgid for entry in po_read(po_path) if entry.msgid and not entry.translated]
                mo_path = catalogue_compile(po_path)
                self.stdout.write(f"{mo_path}: compiled; {len(missing)} message(s) without a translation")
        # The scripts' catalogues, from the djangojs .mo files just written: static files, one per language (ADR 0030).
        for language, _name in settings.LANGUAGES:
            path = javascript_catalogue_path(language)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(javascript_catalogue_source(language), encoding="utf-8")
            self.stdout.write(f"{path}: written")
