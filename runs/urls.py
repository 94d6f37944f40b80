from django.urls import path

from . import api

urlpatterns = [
    path("runs/<str:public_id>/cancel", api.run_cancel, name="api-run-cancel"),
    path("sandbox/upload", api.sandbox_upload, name="api-sandbox-upload"),
    path("files", api.files_create, name="api-files"),
    path("file/<path:key>", api.file_download, name="api-file"),
    path("runbooks/validate", api.runbook_validate, name="api-runbook-validate"),
]
