"""Print the current TOTP code of a staff member's confirmed authenticator device, for the demo.

    python manage.py demo_totp marketer@demo.hipaamail.test

Only with DEBUG on (the zero-service demo, hipaamail.settings.local): anywhere else it would turn a shell on
the server into everyone's second factor, so it refuses.
"""
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = "Print the current 6-digit TOTP code of a user's confirmed TOTP device (demo only: the demo settings, or DEBUG=True)."

    def add_arguments(self, parser):
        parser.add_argument("email", help="The staff member's email address, e.g. marketer@demo.hipaamail.test")

    def handle(self, *args, email: str, **options):
        if not (settings.DEBUG or getattr(settings, "HIPAAMAIL_DEMO", False)):
            raise CommandError(
                "demo_totp only runs with DEBUG=True (the local demo settings, hipaamail.settings.local); "
                "it would otherwise hand out a second factor."
            )
        user = get_user_model().objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with the email address {email!r}.")
        device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
        if device is None:
            raise CommandError(f"{email} has no confirmed TOTP device.")
        code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift)
        self.stdout.write(f"{code:0{device.digits}d}")
        if options.get("verbosity", 1) >= 1:
            left = device.step - int(time.time() - device.t0) % device.step
            self.stderr.write(f"valid for about {left} more seconds (a code is accepted once)")
