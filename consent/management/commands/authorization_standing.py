"""python manage.py authorization_standing --check | --rebuild: the live counts' summary of the authorizations
(consent.models.AuthorizationStanding, ADR 0021) against the evidence it is derived from.

--check compares every standing and every patient's count of authorized purposes with the evidence and exits 1 when
any differs (counts only: no identifier is printed). --rebuild writes them all again from the evidence, in one
transaction, and records that it did in the audit trail. Neither changes what is sent: sends are decided by THE
predicate over the evidence itself.
"""
from django.core.management.base import BaseCommand, CommandError

from consent.selectors.standing import authorization_standing_mismatch_counts
from consent.services.standing import authorization_standing_rebuild


class Command(BaseCommand):
    help = "Check the authorizations' standing (the live counts' summary) against the evidence, or rebuild it."

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--check", action="store_true", help="compare with the evidence; exit 1 on a difference")
        action.add_argument("--rebuild", action="store_true", help="write every standing again from the evidence")

    def handle(self, *args, check: bool, rebuild: bool, **options):
        if rebuild:
            written = authorization_standing_rebuild()
            self.stdout.write(
                self.style.SUCCESS(
                    f"Rebuilt {written['standings']} standing(s) and {written['patients']} patient count(s) "
                    "from the evidence."
                )
            )
            return
        wrong = authorization_standing_mismatch_counts()
        if wrong["standings"] or wrong["patients"]:
            raise CommandError(
                f"{wrong['standings']} standing(s) and {wrong['patients']} patient count(s) differ from the evidence: "
                "the live counts are off until `manage.py authorization_standing --rebuild` runs."
            )
        self.stdout.write(self.style.SUCCESS("Every standing and patient count agrees with the evidence."))
