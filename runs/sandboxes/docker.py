"""The Docker backend: one container per sandbox from the snapshot's image, through the docker SDK.

Images come from ``scripts/build-images`` (no registry). The container runs as the unprivileged sandbox user with
every capability dropped, no new privileges, a read-only root, a private /tmp, and memory, pid and CPU limits; the
workspace is bind-mounted so results are collected from the host side.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.types import Mount

from . import cgroups
from .base import GATEWAY_SOCKET, Execution, Outcome, Sandbox, SandboxSpec, SandboxUnavailable
from .bubblewrap import host_user
from .cgroups import event_count, read_count
from .network import SandboxNetwork, waiting_for_network

LABEL = "jetty.sandbox"


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
        self.container: Any = None

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> Execution:
        if self.container is not None:  # a later process in the same sandbox (the contract check): same name
            self.container.remove(force=True)
            self.container = None
        limits = self.spec.limits
        mounts = [
            Mount("/app", str(self.workspace), type="bind"),
            Mount("/app/assets", str(self.assets), type="bind", read_only=True),
            Mount("/home/agent", str(self.home), type="bind"),
        ]
        mounts += [Mount(inside, host, type="bind", read_only=True) for host, inside in self.spec.extra_binds]
        if self.spec.gateway_socket:
            mounts.append(Mount(GATEWAY_SOCKET, self.spec.gateway_socket, type="bind"))
        if self.isolated_network:
            mounts.append(Mount("/etc/resolv.conf", str(self.resolv_conf), type="bind", read_only=True))
            argv = waiting_for_network(argv)
        environment = {
            "HOME": "/home/agent",
            "USER": "agent",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            **self.spec.env,
            **(env or {}),
        }
        container = self.docker.containers.create(
            self.image,
            command=argv,
            name=f"jetty-{self.spec.name}",
            labels={LABEL: self.spec.name},
            user=f"{self.uid}:{self.gid}",
            working_dir="/app",
            environment=environment,
            mounts=mounts,
            network_mode="host" if self.in_host_network else "none",  # network on: slirp4netns, once started
            hostname=None if self.in_host_network else "sandbox",
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
        if self.container is not None:
            try:
                self.container.remove(force=True)
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
        buffer = b""
        for piece in self.container.logs(stream=True, follow=True, stdout=True, stderr=False):
            buffer += piece
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                yield raw.decode("utf-8", errors="replace")
        if buffer:
            yield buffer.decode("utf-8", errors="replace")

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


def remove_leftovers(base_url: str, prefix: str) -> None:
    if not engine_answers(base_url):
        return
    for container in client(base_url).containers.list(all=True, filters={"label": LABEL}):
        if container.labels.get(LABEL, "").startswith(prefix):
            container.remove(force=True)
