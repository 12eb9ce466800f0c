"""Patients, purposes, authorizations and their revocations.

Authorizations and revocations are append-only evidence: a revocation is a row of its own, never an edit of
the authorization it ends. Whether an authorization covers a patient for a purpose at an instant is decided in
one place only: consent.selectors.authorization_covering_list.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q


class Patient(models.Model):
    # Direct identifiers. Issue 4 encrypts them at rest with a rotatable key (R-SEC-ENCRYPT-REST).
    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=200)
    # Coded attributes, queryable for segments.
    birth_year = models.PositiveSmallIntegerField(null=True, blank=True)
    sex = models.CharField(max_length=1, blank=True, choices=[("F", "Female"), ("M", "Male"), ("X", "Other")])
    postal_code = models.CharField(max_length=10, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        # Never the name or address: strings of objects end up in logs and error pages (R-NO-PHI-LEAK).
        return f"Patient #{self.pk}"


class Purpose(models.Model):
    class Kind(models.TextChoices):
        MARKETING = "marketing", "Marketing (needs a HIPAA authorization)"
        TREATMENT = "treatment", "Treatment or operations (needs a stored consent to email)"

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # R-PURPOSE-REMUNERATION: a third party paying for the communication makes it marketing.
    third_party_paid = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="treatment", third_party_paid=True),
                name="purpose_paid_communication_is_marketing",
                violation_error_message=(
                    "A communication a third party pays for is marketing (45 CFR 164.501); "
                    "choose the marketing kind."
                ),
            )
        ]

    def __str__(self) -> str:
        return self.name


class Authorization(models.Model):
    """A signed authorization (marketing) or stored consent (treatment) for exactly one purpose."""

    class Channel(models.TextChoices):
        WEB = "web", "Signed on the web"
        WRITTEN = "written", "Written, recorded by staff"
        IMPORT = "import", "Imported"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="authorizations")
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="authorizations")
    signed_at = models.DateTimeField()
    # R-AUTH-CORE-5: never empty.
    expires_at = models.DateTimeField()
    signature_name_hash = models.CharField(max_length=64, blank=True)
    text_hash = models.CharField(max_length=64, blank=True)
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.WEB)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["purpose", "patient"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("signed_at")), name="authorization_expires_after_signing"
            )
        ]

    def __str__(self) -> str:
        return f"Authorization #{self.pk}"


class Revocation(models.Model):
    """The end of an authorization, effective when this row commits (R-REVOKE-ANYTIME)."""

    class Channel(models.TextChoices):
        PORTAL = "portal", "Patient portal"
        ONE_CLICK = "one_click", "One-click unsubscribe"
        WRITTEN = "written", "Written, recorded by staff"

    authorization = models.OneToOneField(Authorization, on_delete=models.PROTECT, related_name="revocation")
    revoked_at = models.DateTimeField(db_default=models.functions.Now())
    channel = models.CharField(max_length=20, choices=Channel.choices)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    def __str__(self) -> str:
        return f"Revocation of authorization #{self.authorization_id}"
