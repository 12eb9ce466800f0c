"""python manage.py import_patients FILE [--dry-run] [--update]: the browser import's rules, in a terminal."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from consent.patient_import.validate import COLUMNS, ImportRefused, Mode, error_message, patient_csv_read
from consent.patient_import.write import patient_csv_import


class Command(BaseCommand):
    help = (
        "Import patients from a CSV export (columns: "
        + ", ".join(COLUMNS)
        + "). Every row is checked first; a file with any error is refused whole and nothing is written "
        "(the report names row, column and problem, never a value). Otherwise every row is written in one "
        "transaction. Exits with status 1 when the file has errors."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the CSV file (UTF-8, with a header row)")
        parser.add_argument("--dry-run", action="store_true", help="check the file and report; write nothing")
        parser.add_argument(
            "--update",
            action="store_true",
            help="re-import an export: match rows by external_id (required on every row), update the patients "
            "found with the file's columns, add the others",
        )

    def handle(self, *args, file: Path, dry_run: bool, update: bool = False, **options):
        mode = Mode.UPDATE if update else Mode.CREATE
        try:
            content = file.read_bytes()
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}.") from None
        text, unreadable = patient_csv_read(content=content)
        try:
            if unreadable is not None:
                raise ImportRefused("The file cannot be read.", unreadable)
            validation = patient_csv_import(actor=None, text=text, dry_run=dry_run, mode=mode)
        except ImportRefused as refusal:
            validation = refusal.validation
            self.stdout.write("row\tcolumn\tcode\tproblem")
            for error in validation.errors:
                self.stdout.write(
                    f"{error['row']}\t{error['column'] or '-'}\t{error['code']}\t{error_message(error)}"
                )
            raise CommandError(
                f"{validation.total_rows} rows, {validation.valid_rows} valid, "
                f"{validation.rows_with_errors or len(validation.errors)} with errors "
                f"({len(validation.errors)} problems). Nothing was imported."
            ) from None
        ignored = f", {validation.ignored_columns} unrecognised column(s) ignored" if validation.ignored_columns else ""
        counts = f" ({validation.create_rows} new, {validation.update_rows} updated)" if update else ""
        if dry_run:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Dry run: {validation.total_rows} rows, all valid{counts}{ignored}. Nothing was written."
                )
            )
        elif update:
            summary = (
                f"Imported {validation.total_rows} rows: {validation.create_rows} new, "
                f"{validation.update_rows} updated{ignored}."
            )
            self.stdout.write(self.style.SUCCESS(summary))
        else:
            summary = f"Imported {validation.valid_rows} patients from {validation.total_rows} rows{ignored}."
            self.stdout.write(self.style.SUCCESS(summary))
