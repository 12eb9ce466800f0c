"""python manage.py import_events FILE [--dry-run]: the care events import page's rules, in a terminal."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from consent.services.event_import import (
    COLUMNS,
    EventImportRefused,
    event_csv_import,
    event_import_error_message,
)


class Command(BaseCommand):
    help = (
        "Record care events from a CSV file (columns: "
        + ", ".join(COLUMNS)
        + "; record_number or email names the patient; source defaults to csv). Every row is checked first; a "
        "file with any error is refused whole and nothing is written (the report names row, column and problem, "
        "never a value). An event already recorded with the same source, id and details is counted as already "
        "known. Exits with status 1 when the file has errors."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the CSV file (UTF-8, with a header row)")
        parser.add_argument("--dry-run", action="store_true", help="check the file and report; write nothing")

    def handle(self, *args, file: Path, dry_run: bool, **options):
        try:
            content = file.read_bytes()
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}.") from None
        try:
            validation = event_csv_import(actor=None, content=content, dry_run=dry_run, via="command")
        except EventImportRefused as refusal:
            validation = refusal.validation
            self.stdout.write("row\tcolumn\tcode\tproblem")
            for error in validation.errors:
                self.stdout.write(
                    f"{error['row']}\t{error['column'] or '-'}\t{error['code']}\t{event_import_error_message(error)}"
                )
            raise CommandError(
                f"{validation.total_rows} rows, {validation.rows_with_errors} with errors "
                f"({len(validation.errors)} problems). No event was recorded."
            ) from None
        if dry_run:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Dry run: {validation.total_rows} rows, all valid: {validation.new_rows} new events, "
                    f"{validation.known} already known. Nothing was written."
                )
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(f"{validation.new_rows} events recorded, {validation.known} already known.")
            )
