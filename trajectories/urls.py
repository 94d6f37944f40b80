from django.urls import path

from . import api, io_api

urlpatterns = [
    path("runs", api.run_list, name="api-runs"),
    path("runs/ingest", io_api.run_ingest, name="api-runs-ingest"),
    path("runs/import", io_api.run_import, name="api-runs-import"),
    path("runs/<str:public_id>", api.run_detail, name="api-run"),
    path("runs/<str:public_id>/events", api.run_events, name="api-run-events"),
    path("runs/<str:public_id>/labels", api.run_labels, name="api-run-labels"),
    path("runs/<str:public_id>/labels/history", api.run_label_history, name="api-run-label-history"),
    path("runs/<str:public_id>/labels/<int:label_id>", api.run_label_delete, name="api-run-label"),
    path("runs/<str:public_id>/export", io_api.run_export, name="api-run-export"),
    path("runs/<str:public_id>/export/otlp", io_api.run_export_otlp, name="api-run-export-otlp"),
    path("runs/<str:public_id>/artifacts", api.run_artifacts, name="api-run-artifacts"),
    path("runs/<str:public_id>/artifacts/<path:path>", api.run_artifact_download, name="api-run-artifact"),
]
