"""The Docker backend: one container per sandbox from the snapshot's image, through the docker SDK.

Images come from ``scripts/build-images`` (no registry). The container runs as the unprivileged sandbox user with
every capability dropped, no new privileges, a read-only root, a private /tmp, and memory, pid and CPU limits; the
workspace is bind-mounted so results are collected from the host side.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.types import Mount

from . import cgroups
from .base import GATEWAY_SOCKET, Execution, Outcome, Sandbox, SandboxSpec, SandboxUnavailable, lines_of, script_command
from .bubblewrap import host_user
from .cgroups import event_count, read_count
from .network import SandboxNetwork, waiting_for_network

LABEL = "jetty.sandbox"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# The script container's first process: it waits, and reaps whatever a script's processes leave behind.
HOLD = ["/bin/bash", "-c", "trap 'exit 0' TERM; while :; do sleep 86400 & wait $!; done"]

logger = logging.getLogger(__name__)


@functools.cache
def client(base_url: str) -> docker.DockerClient:
    return docker.DockerClient(base_url=base_url, timeout=60)


def engine_answers(base_url: str) -> bool:
    try:
        return bool(client(base_url).ping())
    except (DockerException, OSError):
        return False


class DockerSandbox(Sandbox):
    backend = "docker"

    def __init__(self, spec: SandboxSpec, root: Path, user: str, base_url: str, image_version: str):
        if not engine_answers(base_url):
            raise SandboxUnavailable(f"no Docker engine answers at {base_url} (scripts/dockerd starts one)")
        self.docker = client(base_url)
        self.image = f"jetty/{spec.snapshot}:{image_version}"
        try:
            self.docker.images.get(self.image)
        except ImageNotFound:
            raise SandboxUnavailable(f"image {self.image} is missing (scripts/build-images builds it)") from None
        super().__init__(spec, root)
        ids = host_user(user)
        self.uid, self.gid = ids or (os.getuid(), os.getgid())
        if ids:
            for path in (self.root, self.workspace, self.results, self.home):
                os.chown(path, self.uid, self.gid)
        self.container: Any = None  # the one running now (its cgroup is what the limits are read from)
        self.retired: list[Any] = []  # earlier containers of this sandbox
        self.script_container: Any = None
        self._preparing: threading.Thread | None = None

    def _create(self, command: list[str], env: dict[str, str], *, name: str, for_script: bool = False) -> Any:
        """A container of this sandbox, created, not started. A script's container has no network and no way to
        the gateway."""
        limits = self.spec.limits
        mounts = [
            Mount("/app", str(self.workspace), type="bind"),
            Mount("/app/assets", str(self.assets), type="bind", read_only=True),
            Mount("/home/agent", str(self.home), type="bind"),
        ]
        mounts += [Mount(inside, host, type="bind", read_only=True) for host, inside in self.spec.extra_binds]
        if self.spec.gateway_socket and not for_script:
            mounts.append(Mount(GATEWAY_SOCKET, self.spec.gateway_socket, type="bind"))
        if self.isolated_network and not for_script:
            mounts.append(Mount("/etc/resolv.conf", str(self.resolv_conf), type="bind", read_only=True))
        host_network = self.in_host_network and not for_script
        return self.docker.containers.create(
            self.image,
            command=command,
            name=name,
            labels={LABEL: self.spec.name},
            user=f"{self.uid}:{self.gid}",
            working_dir="/app",
            environment={**self.base_env, **self.spec.env, **env},
            mounts=mounts,
            network_mode="host" if host_network else "none",  # network on: slirp4netns, once started
            hostname=None if host_network else "sandbox",
            mem_limit=limits.memory_mb * 1024 * 1024,
            memswap_limit=limits.memory_mb * 1024 * 1024,
            pids_limit=limits.pids,
            nano_cpus=int(limits.cpus * 1e9),
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,size=256m", "/run": "rw"},
            stdin_open=False,
            tty=False,
        )

    base_env = {"HOME": "/home/agent", "USER": "agent", "LANG": "C.UTF-8", "TERM": "dumb", "PATH": SANDBOX_PATH}

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> Execution:
        name = f"jetty-{self.spec.name}"
        if self.container is not None:  # a later process in the same sandbox, without a prepared container
            self._retire(self.container)
            name = f"{name}-{len(self.retired)}"
        if self.isolated_network:
            argv = waiting_for_network(argv)
        container = self._create(argv, env or {}, name=name)
        container.start()
        self.container = container
        network = None
        if self.isolated_network:
            container.reload()
            try:
                network = SandboxNetwork(container.attrs["State"]["Pid"])
            except Exception:
                container.remove(force=True)
                raise
        return DockerExecution(self, container, network)

    def prepare_script(self) -> None:
        """Start the container a later script will run in, in the background while the agent works: a script
        then costs one ``exec`` instead of a container's creation and start."""
        if self.script_container is None and self._preparing is None:
            self._preparing = threading.Thread(target=self._start_script_container, daemon=True)
            self._preparing.start()

    def _start_script_container(self) -> None:
        try:
            container = self._create(HOLD, {}, name=f"jetty-{self.spec.name}-script", for_script=True)
            container.start()
            self.script_container = container
        except DockerException:
            logger.exception("sandbox %s: could not prepare its script container", self.spec.name)

    def start_script(self, script: str, env: dict[str, str], timeout_s: float) -> Execution:
        if self._preparing is not None:
            self._preparing.join()
        holder = self.script_container
        if holder is not None:
            try:
                holder.reload()
            except DockerException:
                holder = None
        if holder is None or holder.status != "running":  # not prepared, or ended (a script that ran too long)
            self.script_container = None
            return super().start_script(script, env, timeout_s)
        self.spec = replace(self.spec, limits=replace(self.spec.limits, wall_s=timeout_s))
        if self.container is not None:
            self._retire(self.container)
        self.container = holder  # its cgroup is the one the watchdog reads now
        command = script_command(script)
        try:
            exec_id = self.docker.api.exec_create(
                holder.id, command, user=f"{self.uid}:{self.gid}", workdir="/app", environment={**self.spec.env, **env}
            )
            return DockerScriptExecution(self, holder, exec_id)
        except DockerException as exc:
            raise SandboxUnavailable(f"could not run a script in the sandbox: {exc}") from exc

    def _retire(self, container: Any) -> None:
        """An earlier container of this sandbox, removed when the sandbox is."""
        self.retired.append(container)
        self.container = None

    def alive(self) -> bool:
        if self.container is None:
            return False
        try:
            self.container.reload()
        except NotFound:
            return False
        return self.container.status in ("running", "restarting", "paused")

    def _cgroup_file(self, controller: str, name: str) -> Path | None:
        """One of the container's cgroup files (cgroupfs driver: ``docker/<id>``; systemd: ``docker-<id>.scope``)."""
        if self.container is None:
            return None
        root = cgroups.ROOT  # looked up now, not at import
        for parent in (root / controller / "docker", root / "docker", root / "system.slice"):
            for group in (self.container.id, f"docker-{self.container.id}.scope"):
                if (parent / group / name).exists():
                    return parent / group / name
        return None

    def processes(self) -> int | None:
        path = self._cgroup_file("pids", "pids.current")
        return read_count(path) if path else None

    def memory_kills(self) -> int:
        path = self._cgroup_file("memory", "memory.oom_control") or self._cgroup_file("memory", "memory.events")
        return event_count(path, "oom_kill") if path else 0

    def fork_refusals(self) -> int:
        path = self._cgroup_file("pids", "pids.events")
        return event_count(path, "max") if path else 0

    def destroy(self) -> None:
        if self._preparing is not None:
            self._preparing.join()
        for container in {id(c): c for c in (*self.retired, self.container, self.script_container) if c}.values():
            try:
                container.remove(force=True)
            except NotFound:
                pass
        super().destroy()


class DockerExecution(Execution):
    def __init__(self, sandbox: DockerSandbox, container, network: SandboxNetwork | None):
        super().__init__(sandbox)
        self.container = container
        self.network = network
        self._begin_watch()

    def lines(self) -> Iterator[str]:
        return lines_of(self.container.logs(stream=True, follow=True, stdout=True, stderr=False))

    def wait(self) -> Outcome:
        for _ in self.lines():
            pass
        code = self.container.wait()["StatusCode"]
        self._done.set()
        self.end_network()
        self.container.reload()
        oom = bool(self.container.attrs["State"].get("OOMKilled"))
        tail = self.container.logs(stdout=False, stderr=True, tail=50).decode("utf-8", errors="replace")
        return self.outcome(code, oom, tail)

    def kill(self) -> None:
        self.killed = True
        try:
            self.container.kill()
        except (NotFound, DockerException):
            pass
        self.end_network()


class DockerScriptExecution(Execution):
    """A script ``exec``'d in the sandbox's prepared script container (stderr merged into stdout by the script)."""

    def __init__(self, sandbox: DockerSandbox, container: Any, exec_id: str):
        super().__init__(sandbox)
        self.container, self.exec_id = container, exec_id
        self.stream = sandbox.docker.api.exec_start(exec_id, stream=True)
        self._begin_watch()

    def lines(self) -> Iterator[str]:
        return lines_of(self.stream)

    def wait(self) -> Outcome:
        for _ in self.lines():
            pass
        api = self.sandbox.docker.api  # type: ignore[attr-defined]
        state = api.exec_inspect(self.exec_id)
        while state.get("Running"):
            time.sleep(0.01)
            state = api.exec_inspect(self.exec_id)
        self._done.set()
        if self.killed:  # the watchdog's kill may still be under way: the container is down before we go on
            try:
                self.container.wait(timeout=10)
            except (NotFound, DockerException):
                pass
        code = state.get("ExitCode")
        return self.outcome(None if self.killed else code, False, "")

    def kill(self) -> None:
        self.killed = True
        try:
            self.container.kill()
            self.container.wait(timeout=10)  # down before anyone looks at it again
        except (NotFound, DockerException):
            pass


def remove_leftovers(base_url: str, prefix: str) -> None:
    if not engine_answers(base_url):
        return
    api = client(base_url).api  # the listing alone: another sandbox's container may go while we look
    for container in api.containers(all=True, filters={"label": LABEL}):
        if (container.get("Labels") or {}).get(LABEL, "").startswith(prefix):
            try:
                api.remove_container(container["Id"], force=True)
            except NotFound:
                pass
