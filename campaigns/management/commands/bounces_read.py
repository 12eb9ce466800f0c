"""python manage.py bounces_read PATH: apply the bounce reports in a bounce mailbox (R-BOUNCE-SUPPRESS).

PATH is a Maildir (a folder with cur/, new/, tmp/) or an mbox file: the mailbox the envelope sender
(Return-Path) of campaign messages delivers to. Each message that is a delivery-status notification (RFC 3464)
or an abuse report (RFC 5965) goes through campaigns.bounces, which records hard and soft bounces and
complaints against the delivery its Message-ID names and suppresses the address when it must. Reading the same
mailbox twice changes nothing; --remove deletes the reports once applied (other mail is left where it is).

The output counts outcomes; it never prints an address (R-NO-PHI-LEAK).
"""
import mailbox
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from campaigns.bounces import BounceResult, bounce_message_apply, bounce_report_parse


def mailbox_open(path: Path) -> mailbox.Mailbox:
    if path.is_dir():
        if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raise CommandError(f"{path} is a folder but not a Maildir (it needs cur/, new/ and tmp/).")
        return mailbox.Maildir(path, factory=None, create=False)
    if path.is_file():
        return mailbox.mbox(path, factory=None, create=False)
    raise CommandError(f"{path} does not exist.")


class Command(BaseCommand):
    help = "Apply the bounce and complaint reports found in a Maildir or mbox (R-BOUNCE-SUPPRESS)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="a Maildir folder or an mbox file")
        parser.add_argument("--remove", action="store_true", help="delete each report once it is applied")

    def handle(self, *args, path: str, remove: bool, **options):
        box = mailbox_open(Path(path))
        counts: Counter[str] = Counter()
        to_remove = []
        box.lock()
        try:
            for key in list(box.keys()):
                raw = box.get_bytes(key)
                if not bounce_report_parse(raw):
                    counts["not_a_report"] += 1
                    continue
                counts["reports"] += 1
                for result in bounce_message_apply(raw):
                    counts[result] += 1
                to_remove.append(key)
            if remove:
                for key in to_remove:
                    box.remove(key)
                box.flush()
        finally:
            box.unlock()
            box.close()
        summary = ", ".join(
            f"{counts[name]} {label}"
            for name, label in (
                (BounceResult.RECORDED, "recorded"),
                (BounceResult.DUPLICATE, "already recorded"),
                (BounceResult.UNKNOWN_MESSAGE, "for no message of ours"),
                (BounceResult.RECIPIENT_MISMATCH, "naming another address"),
            )
        )
        self.stdout.write(
            f"{counts['reports']} reports, {counts['not_a_report']} other messages; outcomes: {summary}."
            + (f" Removed {len(to_remove)} reports." if remove else "")
        )
