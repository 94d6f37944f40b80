from django.contrib import admin

from .models import Job, Routine, StepRun, Task, TaskVersion, Upload, WebhookDelivery, Workflow


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["run", "org", "attempts", "heartbeat_at", "worker", "cancel_requested", "created"]
    list_filter = ["org", "cancel_requested"]
    search_fields = ["run__public_id", "idempotency_key"]
    list_select_related = ["run", "org"]
    exclude = ["webhook_secret_encrypted", "secrets_encrypted"]
    readonly_fields = [
        f.name for f in Job._meta.fields if f.name not in ("webhook_secret_encrypted", "secrets_encrypted")
    ]

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


class TaskVersionInline(admin.TabularInline):
    model = TaskVersion
    extra = 0
    fields = readonly_fields = ("number", "message", "token_prefix", "created")
    can_delete = False
    ordering = ["-number"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """Tasks are pushed through the API or `jetty push` (the validator runs on every push); here they are read."""

    list_display = ["name", "collection", "kind", "latest_version", "updated"]
    list_filter = ["kind", "collection__org"]
    search_fields = ["name", "collection__name"]
    list_select_related = ["collection"]
    readonly_fields = ["collection", "name", "kind", "latest_version", "created", "updated"]
    inlines = [TaskVersionInline]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(TaskVersion)
class TaskVersionAdmin(admin.ModelAdmin):
    list_display = ["task", "number", "message", "created"]
    list_select_related = ["task__collection"]
    search_fields = ["task__name"]
    readonly_fields = [f.name for f in TaskVersion._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Routine)
class RoutineAdmin(admin.ModelAdmin):
    list_display = ["public_id", "task", "cadence", "hour", "minute", "weekday", "paused", "next_run_at"]
    list_filter = ["cadence", "paused"]
    list_select_related = ["task__collection"]
    readonly_fields = ["public_id", "last_run", "next_run_at", "token_prefix"]


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    fields = readonly_fields = ("name", "visit", "step_type", "status", "attempts", "error", "started", "finished")
    can_delete = False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["run", "cursor", "moves"]
    list_select_related = ["run"]
    readonly_fields = ["run", "definition", "cursor", "moves"]
    inlines = [StepRunInline]

    def has_add_permission(self, request) -> bool:
        return False
