from django.contrib import admin

from .models import Job, Upload, WebhookDelivery


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["run", "org", "attempts", "heartbeat_at", "worker", "cancel_requested", "created"]
    list_filter = ["org", "cancel_requested"]
    search_fields = ["run__public_id", "idempotency_key"]
    list_select_related = ["run", "org"]
    exclude = ["webhook_secret_encrypted"]
    readonly_fields = [f.name for f in Job._meta.fields if f.name != "webhook_secret_encrypted"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["run", "attempt", "status_code", "delivered", "duration_ms", "created"]
    list_filter = ["delivered"]
    list_select_related = ["run"]


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ["key", "org", "size", "purpose", "created"]
    list_filter = ["org"]
    search_fields = ["key", "public_id"]
