from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evals: rubrics, judges, labels, experiments, gates"

    def ready(self) -> None:
        from . import steps  # noqa: F401  (registers the judge steps in the workflow step registry)
