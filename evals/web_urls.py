"""The UI's evals pages: labelling queues and dashboards."""

from django.urls import path

from . import views

urlpatterns = [
    path("labelling/", views.queues, name="ui-queues"),
    path("labelling/new", views.new_queue, name="ui-queue-new"),
    path("labelling/<str:public_id>/", views.queue_page, name="ui-queue"),
    path("labelling/<str:public_id>/next", views.queue_next, name="ui-queue-next"),
    path("labelling/<str:public_id>/items/<int:position>/", views.queue_item, name="ui-queue-item"),
    path("labelling/<str:public_id>/items/<int:position>/adjudicate", views.adjudicate_item, name="ui-adjudicate"),
    path("labelling/<str:public_id>/disagreements/", views.disagreements, name="ui-disagreements"),
    path("dashboards/", views.dashboards, name="ui-dashboards"),
    path("dashboards/plotly-<str:version>.js", views.plotly_js, name="ui-plotly-js"),
]
