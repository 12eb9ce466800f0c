"""Test data made through the real services, never by writing rows by hand (STYLE.md)."""
import itertools
from datetime import timedelta

from django.utils import timezone

from consent import services
from consent.models import Purpose

_serial = itertools.count(1)


def patient_make(**overrides):
    n = next(_serial)
    fields = {"email": f"patient{n}@example.org", "full_name": f"Test Patient {n}", "birth_year": 1950 + n % 50}
    fields |= overrides
    return services.patient_create(actor=None, **fields)


def purpose_make(**overrides):
    n = next(_serial)
    fields = {
        "code": f"purpose-{n}",
        "name": f"Purpose {n}",
        "description": "Messages about a product we offer.",
        "kind": Purpose.Kind.MARKETING,
    }
    fields |= overrides
    return services.purpose_create(actor=None, **fields)


def authorization_make(*, patient, purpose, expires_in=timedelta(days=365), signed_ago=timedelta(days=1), **extra):
    now = timezone.now()
    return services.authorization_grant(
        actor=None, patient=patient, purpose=purpose, signed_at=now - signed_ago, expires_at=now + expires_in, **extra
    )
