"""Consent in the Django admin: only what has no page of its own, read-only (issue 11, "no back doors").

Patients, purposes, form versions, authorizations, revocations, expiry events, defects, invitations and imports
are not registered: the product's own pages show them under their role policy (R-MIN-NECESSARY), record every
view of a patient's record in the audit trail (R-SEC-AUDIT) and change them only through the services that keep
authorizations append-only (R-AUTH-IMMUTABLE, R-RETAIN-6Y). An admin page would be a second, weaker door to the
same rows, and one more place that could show a decrypted identifier."""
from django.contrib import admin

from audit.admin import ReadOnlyAdmin
from consent.models import Suppression


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    """Why addresses are suppressed (R-BOUNCE-SUPPRESS), which no product page lists. The address's keyed digest
    is left out: it names an address to whoever holds the key, and the reason is what an administrator needs."""

    fields = ("reason", "smtp_code", "created_at", "recorded_by")
    list_display = ("id", "reason", "smtp_code", "created_at", "recorded_by")
    list_filter = ("reason",)

    def get_readonly_fields(self, request, obj=None):
        return self.fields
