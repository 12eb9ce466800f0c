from django.contrib import admin

from campaigns.models import Campaign, Delivery


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "purpose", "status", "created_by", "launched_at", "finished_at")
    list_filter = ("status", "purpose")
    readonly_fields = ("status", "launched_at", "finished_at", "created_by")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Evidence, read-only: each row names the authorization that covered it or why it was blocked."""

    list_display = ("id", "campaign", "patient_id", "status", "authorization_id", "block_reason", "sent_at")
    list_filter = ("campaign", "status", "block_reason")
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
