"""python manage.py audit_verify: walk the audit chain and report the first break (R-SEC-INTEGRITY).

Seals what is committed first, then reads every sealed event in sequence order through a server-side cursor,
recomputing each hash in this process, checking each link and each signed checkpoint (the table's, the
configured checkpoint file's, and any --checkpoint-file copies). Exit status 0 when intact, 1 at a break.
The outcome is recorded as an audit.verified event (the audit pages show it) unless --read-only.
"""
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit import checkpoints, selectors, services
from audit.models import AuditEvent


class Command(BaseCommand):
    help = "Verify the audit hash chain and its signed checkpoints; report the first break."

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoint-file",
            action="append",
            default=[],
            type=Path,
            help="A file of checkpoint lines kept outside the database (may be repeated).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=selectors.VERIFY_WORKERS,
            help="Walk a long chain (200,000 events or more) in this many stretches at once (default: CPUs, up to 4).",
        )
        parser.add_argument(
            "--read-only",
            action="store_true",
            help="Neither seal pending events nor record the outcome (a read replica, a restored copy).",
        )

    def handle(self, *args, checkpoint_file, workers, read_only, **options):
        paths = list(checkpoint_file)
        configured = checkpoints.checkpoint_file()
        if configured is not None and configured.exists() and configured not in paths:
            paths.append(configured)
        copies = []
        for path in paths:
            try:
                copies += checkpoints.checkpoint_file_read(path)
            except FileNotFoundError:
                raise CommandError(f"No checkpoint file at {path}.") from None
            except ValueError as error:
                raise CommandError(str(error)) from None
        if not read_only:
            services.audit_seal()
        started = time.perf_counter()
        result = selectors.audit_chain_walk(extra_checkpoints=copies, workers=max(1, workers))
        seconds = time.perf_counter() - started
        unsealed = AuditEvent.objects.filter(sequence__isnull=True).count()
        rate = result.events / seconds if seconds else 0
        self.stdout.write(
            f"Walked {result.events:,} events in {seconds:.2f}s ({rate:,.0f} events/s); "
            f"{len(result.checkpoints)} checkpoint(s) known, {result.checkpoints_checked} matched."
        )
        if unsealed:
            self.stdout.write(f"{unsealed:,} event(s) committed but not sealed yet (not covered by this walk).")
        if not read_only:
            services.audit_verification_record(result=result)
        if result.ok:
            self.stdout.write(
                self.style.SUCCESS(f"Chain intact through sequence {result.last_sequence} (head {result.last_hash}).")
            )
            return
        raise CommandError(f"Chain broken at {result.first_break.describe()}.", returncode=1)
