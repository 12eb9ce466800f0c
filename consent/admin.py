from django.contrib import admin

from consent.models import Authorization, Patient, Purpose, Revocation


@admin.register(Purpose)
class PurposeAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "kind", "third_party_paid")


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    # Ids and coded attributes only in lists; names and addresses stay on the record itself.
    list_display = ("id", "birth_year", "sex", "postal_code", "created_at")
    search_fields = ("=id",)


class _EvidenceAdmin(admin.ModelAdmin):
    """Authorizations and revocations are append-only evidence: no edit, no delete (R-RETAIN-6Y)."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Authorization)
class AuthorizationAdmin(_EvidenceAdmin):
    list_display = ("id", "patient_id", "purpose", "signed_at", "expires_at", "channel")
    list_filter = ("purpose", "channel")


@admin.register(Revocation)
class RevocationAdmin(_EvidenceAdmin):
    list_display = ("id", "authorization_id", "revoked_at", "channel")
    list_filter = ("channel",)
