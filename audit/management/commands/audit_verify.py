"""python manage.py audit_verify: walk the audit chain and report the first break (R-SEC-INTEGRITY).

Seals what is committed first, then reads every sealed event in sequence order through a server-side cursor,
recomputing each hash in this process, checking each link and each signed checkpoint (the table's, the
configured checkpoint file's, and any --checkpoint-file copies). Exit status 0 when intact, 1 at a break.
Then runs every registered check of other apps' records against the sealed events the walk covered
(audit.verification; campaigns registers the deliveries') and names each mismatch; exit status 1 at a
mismatch too. The outcome is recorded as an audit.verified event (the audit pages and the compliance summary
show it) unless --read-only.
The work is audit.services.audit_chain_verify, which the scheduled audit.tasks.audit_verify_task runs too; the
task also alerts the compliance officers and administrators at a break, this command only reports it.
"""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit import selectors, services


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
        try:
            verification = services.audit_chain_verify(
                checkpoint_files=checkpoint_file, workers=workers, read_only=read_only
            )
        except services.CheckpointCopyUnreadable as error:
            raise CommandError(str(error)) from None
        result, seconds = verification.result, verification.seconds
        rate = result.events / seconds if seconds else 0
        self.stdout.write(
            f"Walked {result.events:,} events in {seconds:.2f}s ({rate:,.0f} events/s); "
            f"{len(result.checkpoints)} checkpoint(s) known, {result.checkpoints_checked} matched."
        )
        if result.archive_floor is not None:
            self.stdout.write(
                f"Events through sequence {result.archive_floor.sequence} are archived (signed archive floor, "
                f"{result.archive_floor.created_at:%Y-%m-%d}); the walk started after them."
            )
        if verification.unsealed:
            self.stdout.write(
                f"{verification.unsealed:,} event(s) committed but not sealed yet (not covered by this walk)."
            )
        for check in verification.checks:
            style = self.style.SUCCESS if check.ok else self.style.ERROR
            self.stdout.write(style(check.summary()))
            for line in check.lines():
                self.stdout.write(f"  {line}")
            if check.mismatches > len(check.named):
                self.stdout.write(
                    f"  … and {check.mismatches - len(check.named):,} more (only the first {len(check.named)} are named)."
                )
        if verification.checks:
            self.stdout.write(f"Checks took {verification.checks_seconds:.2f}s.")
        failed = [check for check in verification.checks if not check.ok]
        if not result.ok:
            raise CommandError(f"Chain broken at {result.first_break.describe()}.", returncode=1)
        self.stdout.write(
            self.style.SUCCESS(f"Chain intact through sequence {result.last_sequence} (head {result.last_hash}).")
        )
        if failed:
            raise CommandError(
                "Records differ from the sealed trail: " + "; ".join(check.summary() for check in failed),
                returncode=1,
            )
