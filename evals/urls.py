from django.urls import path

from . import api

urlpatterns = [
    path("rubrics", api.rubrics, name="api-rubrics"),
    path("rubrics/<str:ref>", api.rubric_detail, name="api-rubric"),
    path("runs/<str:public_id>/judge", api.run_judge, name="api-run-judge"),
    path("datasets", api.datasets, name="api-datasets"),
    path("datasets/<str:ref>", api.dataset_detail, name="api-dataset"),
    path("evals/agreement", api.agreement, name="api-evals-agreement"),
    path("hill-climbs", api.hill_climbs, name="api-hill-climbs"),
    path("hill-climbs/<str:public_id>", api.hill_climb_detail, name="api-hill-climb"),
    path("experiments", api.experiments, name="api-experiments"),
    path("experiments/<str:public_id>", api.experiment_detail, name="api-experiment"),
    path("experiments/<str:public_id>/gate", api.experiment_gate, name="api-experiment-gate"),
]
