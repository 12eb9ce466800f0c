"""python manage.py bounces_read PATH: apply the bounce reports in a bounce mailbox (R-BOUNCE-SUPPRESS).

PATH is a Maildir (a folder with cur/, new/, tmp/) or an mbox file: the mailbox the envelope sender
(Return-Path) of campaign messages delivers to. Each message that is a delivery-status notification (RFC 3464)
or an abuse report (RFC 5965) goes through campaigns.sending.bounces, which records hard and soft bounces and
complaints against the delivery its Message-ID names and suppresses the address when it must. Reading the same
mailbox twice changes nothing; --remove deletes the reports once applied (other mail is left where it is).

The output counts outcomes; it never prints an address (R-NO-PHI-LEAK).
"""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from campaigns.sending.bounces import BounceMailboxError, BounceResult, bounce_mailbox_read


class Command(BaseCommand):
    help = "Apply the bounce and complaint reports found in a Maildir or mbox: each hard bounce or complaint stops marketing mail to that address."

    def add_arguments(self, parser):
        parser.add_argument("path", help="a Maildir folder or an mbox file")
        parser.add_argument("--remove", action="store_true", help="delete each report once it is applied")

    def handle(self, *args, path: str, remove: bool, **options):
        try:
            counts = bounce_mailbox_read(path=Path(path), remove=remove)
        except BounceMailboxError as error:
            raise CommandError(str(error)) from None
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
            f"{counts['reports']} reports, {counts['other']} other messages; outcomes: {summary}."
            + (f" Removed {counts['removed']} reports." if remove else "")
        )
