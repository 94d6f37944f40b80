"""The UI's evals pages: labelling queues and dashboards."""

from django.urls import path

from . import views

urlpatterns = [
    path("labelling/", views.queues, name="ui-queues"),
    path("dashboards/", views.dashboards, name="ui-dashboards"),
]
