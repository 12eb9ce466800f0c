"""Record expiry events reported by an integration (an EHR or CRM batch export): the event an event-based
authorization names ("when you no longer rent equipment from us") happened for these patients.

    python manage.py record_expiry_events events.csv

The CSV has the columns external_id, purpose (the purpose code) and occurred_on (YYYY-MM-DD). Identifiers come
in a file, never on the command line (shell history and process lists are logs). Each row is reported by its
number and a code, never by its values; the rows that match are recorded through the same service staff use
(consent.services.authorizations.expiry_event_record), so coverage ends as when an expiry date passes (R-AUTH-DEFECTIVE).
"""
import csv
from datetime import date, datetime, time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from consent import crypto
from consent.models import Authorization, ExpiryEvent, Patient
from consent.services.authorizations import expiry_event_record

COLUMNS = ("external_id", "purpose", "occurred_on")


def _event_authorizations(*, external_id: str, purpose_code: str) -> list[Authorization] | str:
    patient = Patient.objects.filter(external_id_digest=crypto.lookup_digest(external_id)).first()
    if patient is None:
        return "unknown_patient"
    candidates = list(
        Authorization.objects.filter(patient=patient, purpose__code=purpose_code)
        .exclude(expiry_event="")
        .exclude(pk__in=ExpiryEvent.objects.values("authorization_id"))
        .order_by("id")
    )
    return candidates or "no_event_based_authorization"


class Command(BaseCommand):
    help = "Record expiry events from an integration's CSV file (external_id, purpose, occurred_on)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file with the columns external_id, purpose, occurred_on")

    def handle(self, *args, file: str, **options):
        try:
            with open(file, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise CommandError(f"Cannot read the file: {type(error).__name__}") from None
        if rows and set(COLUMNS) - set(rows[0]):
            raise CommandError(f"The file needs the columns {', '.join(COLUMNS)}.")
        recorded, problems = 0, []
        for number, row in enumerate(rows, start=2):  # row 1 is the header
            try:
                occurred = date.fromisoformat((row.get("occurred_on") or "").strip())
            except ValueError:
                problems.append((number, "bad_date"))
                continue
            if occurred > timezone.localdate():
                problems.append((number, "date_in_future"))
                continue
            found = _event_authorizations(
                external_id=(row.get("external_id") or "").strip(), purpose_code=(row.get("purpose") or "").strip()
            )
            if isinstance(found, str):
                problems.append((number, found))
                continue
            occurred_at = timezone.make_aware(datetime.combine(occurred, time.min))
            for authorization in found:
                try:
                    expiry_event_record(
                        actor=None, authorization_id=authorization.pk, occurred_at=occurred_at, source="integration"
                    )
                    recorded += 1
                except ValidationError:
                    problems.append((number, "already_recorded"))
        for number, code in problems:
            self.stderr.write(f"row {number}: {code}")
        self.stdout.write(f"{recorded} expiry event(s) recorded, {len(problems)} row(s) not recorded.")
        if problems:
            raise CommandError("Some rows were not recorded; see above.")
