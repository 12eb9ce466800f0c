"""Staff accounts for tests: a user with a role, a verified email and (on request) a TOTP device."""
import itertools

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice

_serial = itertools.count(1)
PASSWORD = "correct horse battery staple"


def staff_make(*, role: str = "marketer", email: str | None = None, with_totp: bool = False):
    n = next(_serial)
    email = email or f"staff{n}@riverside-health.example"
    user = get_user_model().objects.create_user(
        username=f"staff{n}", email=email, password=PASSWORD, is_staff=role == "administrator"
    )
    if role:
        # get_or_create: transactional tests flush the groups the roles migration made.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    if with_totp:
        TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    return user
