"""python manage.py audit_checkpoint: sign the audit chain head (R-SEC-INTEGRITY).

Seals what is committed, signs (sequence, head hash, time) with HMAC-SHA256 under AUDIT_CHECKPOINT_KEYS, keeps
the checkpoint in the append-only table and in AUDIT_CHECKPOINT_FILE when set, and prints it as one JSON line:
run it on a schedule and keep that output somewhere the database's administrators cannot rewrite.

`--archive-through SEQUENCE` signs an archive floor instead: the events through SEQUENCE are archived outside the
database (docs/retention.md), and audit_verify may start after them once they are gone.
"""
from django.core.management.base import BaseCommand, CommandError

from audit import checkpoints, services


class Command(BaseCommand):
    help = "Sign the audit chain's head so that a later audit_verify detects a cut tail."

    def add_arguments(self, parser):
        parser.add_argument(
            "--archive-through",
            type=int,
            metavar="SEQUENCE",
            help="Sign an archive floor: the events through SEQUENCE are archived (docs/retention.md).",
        )

    def handle(self, *args, archive_through=None, **options):
        if archive_through is None:
            checkpoint = services.audit_checkpoint_create()
        else:
            try:
                checkpoint = services.audit_archive_floor_create(through_sequence=archive_through)
            except services.ArchiveFloorRefused as error:
                raise CommandError(str(error)) from None
        self.stdout.write(checkpoints.checkpoint_line(checkpoint))
