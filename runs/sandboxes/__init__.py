"""Sandbox backends behind one interface: ``create_sandbox(spec)``.

``JETTY_SANDBOX_BACKEND`` picks one: ``bubblewrap`` or ``docker`` (``auto``, the default, takes Docker when an
engine answers and bubblewrap otherwise).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from .base import Execution, Limits, Outcome, Sandbox, SandboxSpec, SandboxUnavailable

__all__ = ["Execution", "Limits", "Outcome", "Sandbox", "SandboxSpec", "SandboxUnavailable", "create_sandbox"]


def sandbox_root() -> Path:
    root = Path(settings.JETTY_SANDBOX_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)  # the sandbox user must reach its own folder below, and list nothing
    return root


def create_sandbox(spec: SandboxSpec, backend: str | None = None) -> Sandbox:
    name = backend or settings.JETTY_SANDBOX_BACKEND
    if name == "auto":
        from .docker import engine_answers

        name = "docker" if engine_answers(settings.JETTY_DOCKER_HOST) else "bubblewrap"
    if name == "docker":
        from .docker import DockerSandbox

        return DockerSandbox(
            spec, sandbox_root(), settings.JETTY_SANDBOX_USER, settings.JETTY_DOCKER_HOST, settings.JETTY_IMAGE_VERSION
        )
    if name == "bubblewrap":
        from .bubblewrap import BubblewrapSandbox

        return BubblewrapSandbox(
            spec, sandbox_root(), settings.JETTY_SANDBOX_USER, require_cgroups=settings.JETTY_REQUIRE_CGROUPS
        )
    raise SandboxUnavailable(f"unknown sandbox backend {name!r}")


def destroy_leftovers(prefix: str) -> None:
    """Remove what crashed attempts left behind for a run (folders and cgroups named ``<prefix>-a<n>``)."""
    import shutil

    from .cgroups import Cgroup
    from .docker import remove_leftovers

    remove_leftovers(settings.JETTY_DOCKER_HOST, f"{prefix}-a")
    for folder in sandbox_root().glob(f"{prefix}-a*"):
        Cgroup.existing(folder.name).remove()
        shutil.rmtree(folder, ignore_errors=True)
