from django.urls import path

from . import api

urlpatterns = [
    path("runs/<str:public_id>/cancel", api.run_cancel, name="api-run-cancel"),
]
