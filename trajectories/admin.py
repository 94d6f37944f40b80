from django.contrib import admin

from .models import Run


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["public_id", "org", "task", "kind", "model", "status", "total_tokens", "cost_usd", "created"]
    list_filter = ["status", "kind", "org"]
    search_fields = ["public_id", "task", "model"]
    list_select_related = ["org"]
    readonly_fields = [f.name for f in Run._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
