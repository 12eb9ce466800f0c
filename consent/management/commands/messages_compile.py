"""Compile every message catalogue under LOCALE_PATHS to its .mo, in pure Python (ADR 0025): no GNU gettext needed.

    python manage.py messages_compile

Extract new strings first with `python manage.py makemessages -l es -e html,txt,py --no-location --no-wrap -i "*/tests/*"
-i "bench/*" -i "docs/*"` (that one needs xgettext, a translator's tool), translate them in the .po, then run this and
commit both files."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from consent.catalogue import catalogue_compile, catalogue_paths, po_read


class Command(BaseCommand):
    help = "Compile the .po message catalogues to .mo files without GNU gettext."

    def handle(self, *args, **options):
        for locale_dir in settings.LOCALE_PATHS:
            for po_path in catalogue_paths(Path(locale_dir)):
                missing = [entry.msgid for entry in po_read(po_path) if entry.msgid and not entry.translated]
                mo_path = catalogue_compile(po_path)
                self.stdout.write(f"{mo_path}: compiled; {len(missing)} message(s) without a translation")
