from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs: gateway, sandboxes, agents, workflows"

    def ready(self) -> None:
        from .gateway import scripted

        scripted.register()
