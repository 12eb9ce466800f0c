import pytest
from django.db import connection
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from hipaamail.tests.factories import staff_make

requires_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL; make test does)"
)


@pytest.fixture
def verified_client(client):
    """A test client signed in as a staff member of the given role who passed the second factor."""

    def sign_in(role: str = "marketer", user=None):
        user = user or staff_make(role=role, with_totp=True)
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
            user=user, name="Authenticator app", confirmed=True
        )
        client.force_login(user)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
        return user

    client.sign_in = sign_in
    return client
