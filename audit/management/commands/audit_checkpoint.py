"""python manage.py audit_checkpoint: sign the audit chain head (R-SEC-INTEGRITY).

Seals what is committed, signs (sequence, head hash, time) with HMAC-SHA256 under AUDIT_CHECKPOINT_KEYS, keeps
the checkpoint in the append-only table and in AUDIT_CHECKPOINT_FILE when set, and prints it as one JSON line:
run it on a schedule and keep that output somewhere the database's administrators cannot rewrite.
"""
from django.core.management.base import BaseCommand

from audit import checkpoints, services


class Command(BaseCommand):
    help = "Sign the audit chain's head so that a later audit_verify detects a cut tail."

    def handle(self, *args, **options):
        checkpoint = services.audit_checkpoint_create()
        self.stdout.write(checkpoints.checkpoint_line(checkpoint))
