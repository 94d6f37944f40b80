from django.urls import path

from . import api

urlpatterns = [
    path("runs", api.run_list, name="api-runs"),
    path("runs/<str:public_id>", api.run_detail, name="api-run"),
    path("runs/<str:public_id>/events", api.run_events, name="api-run-events"),
]
