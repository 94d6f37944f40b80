from django.urls import path

from . import api, catalog_api

urlpatterns = [
    path("runs/<str:public_id>/cancel", api.run_cancel, name="api-run-cancel"),
    path("runs/<str:public_id>/replay", api.run_replay, name="api-run-replay"),
    path("runs/<str:public_id>/fork", api.run_fork, name="api-run-fork"),
    path("sandbox/upload", api.sandbox_upload, name="api-sandbox-upload"),
    path("files", api.files_create, name="api-files"),
    path("file/<path:key>", api.file_download, name="api-file"),
    path("runbooks/validate", api.runbook_validate, name="api-runbook-validate"),
    path("collections", catalog_api.collections, name="api-collections"),
    path("collections/<str:name>", catalog_api.collection_detail, name="api-collection"),
    path("collections/<str:name>/environment", catalog_api.collection_environment, name="api-collection-env"),
    path("collections/<str:name>/secrets/check", catalog_api.secrets_check, name="api-collection-secrets-check"),
    path("collections/<str:name>/tasks", catalog_api.tasks, name="api-tasks"),
    path("collections/<str:name>/tasks/<str:task>", catalog_api.task_detail, name="api-task"),
    path("collections/<str:name>/tasks/<str:task>/versions", catalog_api.task_versions, name="api-task-versions"),
    path(
        "collections/<str:name>/tasks/<str:task>/versions/<int:number>",
        catalog_api.task_version,
        name="api-task-version",
    ),
    path("collections/<str:name>/tasks/<str:task>/diff", catalog_api.task_diff, name="api-task-diff"),
    path("run/<str:name>/<str:task>", catalog_api.run_task, name="api-run-task"),
    path("run-sync/<str:name>/<str:task>", catalog_api.run_task_sync, name="api-run-task-sync"),
    path("collections/<str:name>/tasks/<str:task>/routines", catalog_api.task_routines, name="api-task-routines"),
    path("routines", catalog_api.routines, name="api-routines"),
    path("routines/<str:public_id>", catalog_api.routine_detail, name="api-routine"),
    path("routines/<str:public_id>/<str:action>", catalog_api.routine_action, name="api-routine-action"),
    path("step-templates", catalog_api.step_templates, name="api-step-templates"),
    path("runs/<str:public_id>/steps", catalog_api.run_steps, name="api-run-steps"),
]
