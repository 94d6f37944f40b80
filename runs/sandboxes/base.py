"""One interface over the sandbox backends: a fresh, limited, isolated place to run one agent process tree.

A sandbox owns a host folder laid out as the agent sees ``/app``: ``assets/`` (read-only inside), ``results/``
(collected afterwards) and the working files, plus a private home. Everything is destroyed with the sandbox.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import hostile

if TYPE_CHECKING:
    from .network import SandboxNetwork

logger = logging.getLogger(__name__)

GATEWAY_SOCKET = "/run/jetty/gateway.sock"
PIDS_AT_LIMIT_S, PIDS_WINDOW_S = 3, 5  # a sandbox at its process limit for 3 of 5 seconds is ended
RESOLV_CONF = "nameserver 10.0.2.3\noptions timeout:2 attempts:2\n"  # slirp4netns's DNS forwarder


@dataclass(frozen=True)
class Limits:
    cpus: float = 1.0
    memory_mb: int = 2048
    pids: int = 512
    disk_mb: int = 4096
    wall_s: float = 1800.0


@dataclass(frozen=True)
class SandboxSpec:
    name: str  # unique per sandbox, e.g. the run's public id
    snapshot: str = "general"
    network: bool = True  # the internet through slirp4netns (runs/sandboxes/network.py), never the host
    host_network: bool = False  # network on, in the host's own namespace (JETTY_SANDBOX_HOST_NETWORK; unsafe)
    limits: Limits = field(default_factory=Limits)
    env: dict[str, str] = field(default_factory=dict)  # only what the runbook declares, plus the run token
    extra_binds: tuple[tuple[str, str], ...] = ()  # (host path, sandbox path), read-only
    gateway_socket: str | None = None  # network off: the gateway's unix socket, at GATEWAY_SOCKET inside


@dataclass
class Outcome:
    exit_code: int | None
    timed_out: bool = False
    oom_killed: bool = False
    disk_exceeded: bool = False
    pids_exceeded: bool = False
    killed: bool = False
    stderr_tail: str = ""

    @property
    def user_error(self) -> str | None:
        """Why the run failed through its own doing (time, memory, disk), or None."""
        if self.timed_out:
            return "wall time limit exceeded"
        if self.oom_killed:
            return "memory limit exceeded"
        if self.disk_exceeded:
            return "disk limit exceeded"
        if self.pids_exceeded:
            return "process limit exceeded"
        return None


def dir_size_mb(path: Path) -> float:
    """The size of a sandbox's tree, walked without following the links the agent may plant or swap in."""
    return hostile.tree_bytes(path) / (1024 * 1024)


class Execution(ABC):
    """The sandbox's main process: its output lines while it runs, then how it ended."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        sandbox.current = self  # what a cancel kills now
        self.started = time.monotonic()
        self.timed_out = self.disk_exceeded = self.pids_exceeded = self.memory_exceeded = self.killed = False
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._done = threading.Event()
        self.network: SandboxNetwork | None = None

    def end_network(self) -> None:
        if self.network is not None:
            self.network.close()

    def _begin_watch(self) -> None:
        self._watch.start()

    def _watchdog(self) -> None:
        """Enforce wall time and disk (no quota is portable across backends, so disk is polled). End a sandbox as
        soon as its memory limit has killed a process (the run has failed already), or once it has been held at
        its process limit for a few seconds (the kernel refuses the forks, and a fork bomb would otherwise spin
        until the wall time)."""
        limits = self.sandbox.spec.limits
        self._memory_kills, self._refusals = self.sandbox.memory_kills(), self.sandbox.fork_refusals()
        self._pressed: deque[bool] = deque(maxlen=PIDS_WINDOW_S)
        while not self._done.wait(1.0):
            if time.monotonic() - self.started > limits.wall_s:
                self.timed_out = True
                self.kill()
                return
            try:
                exceeded = self._over_a_limit(limits)
            except Exception:  # a look that fails must not end the watch, or the wall time with it
                logger.exception("sandbox %s: could not read its usage", self.sandbox.spec.name)
                continue
            if exceeded:
                setattr(self, exceeded, True)
                self.kill()
                return

    def _over_a_limit(self, limits: Limits) -> str | None:
        """The flag of the limit the sandbox is over (disk, memory, processes), or None."""
        if dir_size_mb(self.sandbox.workspace) > limits.disk_mb:
            return "disk_exceeded"
        if self.sandbox.memory_kills() > self._memory_kills:
            return "memory_exceeded"  # the run has failed already: end it now, not at the agent's leisure
        # At the limit: full now, or forks refused since the last look. A fork bomb's count swings (bash backs off
        # and gives up, processes die, others fork), so a look can fall in a dip: most of a window counts.
        processes, refused = self.sandbox.processes(), self.sandbox.fork_refusals()
        self._pressed.append((processes is not None and processes >= limits.pids) or refused > self._refusals)
        self._refusals = refused
        return "pids_exceeded" if sum(self._pressed) >= PIDS_AT_LIMIT_S else None

    def outcome(self, exit_code: int | None, oom_killed: bool, stderr_tail: str) -> Outcome:
        """How the process ended, with what the watchdog and kill() saw."""
        return Outcome(
            exit_code=exit_code,
            timed_out=self.timed_out,
            oom_killed=oom_killed or self.memory_exceeded,
            disk_exceeded=self.disk_exceeded,
            pids_exceeded=self.pids_exceeded,
            killed=self.killed,
            stderr_tail=stderr_tail[-4000:],
        )

    @abstractmethod
    def lines(self) -> Iterator[str]:
        """stdout, line by line, until the process ends."""

    @abstractmethod
    def wait(self) -> Outcome: ...

    @abstractmethod
    def kill(self) -> None: ...


class Sandbox(ABC):
    backend: str
    uid: int
    gid: int

    def __init__(self, spec: SandboxSpec, root: Path):
        self.current: Execution | None = None  # the process running in it now (the agent, then a check)
        self.spec = spec
        self.root = root / spec.name
        self.workspace = self.root / "app"
        self.home = self.root / "home"
        for path in (self.workspace / "assets", self.workspace / "results", self.home):
            path.mkdir(parents=True, exist_ok=True)

    @property
    def isolated_network(self) -> bool:
        """Network on, in a namespace of its own: slirp4netns attaches once the sandbox's process exists."""
        return self.spec.network and not self.spec.host_network

    @property
    def in_host_network(self) -> bool:
        return self.spec.network and self.spec.host_network

    @property
    def resolv_conf(self) -> Path:
        path = self.root / "resolv.conf"
        if not path.exists():
            path.write_text(RESOLV_CONF)
            path.chmod(0o644)
        return path

    @property
    def assets(self) -> Path:
        return self.workspace / "assets"

    @property
    def results(self) -> Path:
        return self.workspace / "results"

    def hand_over(self, path: Path) -> None:
        """Give what the platform wrote under ``path`` (an agent's configuration) to the sandbox's user."""
        if os.geteuid() != 0:
            return
        for folder, dirs, files in os.walk(path):
            for name in (folder, *(os.path.join(folder, n) for n in dirs + files)):
                os.lchown(name, self.uid, self.gid)

    @abstractmethod
    def start(self, argv: list[str], env: dict[str, str] | None = None) -> Execution:
        """Start the main process (``/app`` is its working directory)."""

    def start_script(self, script: str, env: dict[str, str], timeout_s: float) -> Execution:
        """Run a shell script in the sandbox once its main process has ended (the platform's own checks): as the
        sandbox's user, over the same files, under the same limits but a wall time of its own, with no network and
        no way to the gateway. stderr is merged into the lines read."""
        self.spec = replace(
            self.spec,
            network=False,
            host_network=False,
            gateway_socket=None,
            limits=replace(self.spec.limits, wall_s=timeout_s),
        )
        return self.start(script_command(script), env)

    def prepare_script(self) -> None:
        """Get ready, while the agent works, for a script to run later (a backend that can, does)."""
        return None

    def processes(self) -> int | None:
        """How many processes the sandbox's pids limit counts now (None when the backend cannot tell)."""
        return None

    def memory_kills(self) -> int:
        """How many of the sandbox's processes its memory limit has killed so far (0 when it cannot tell)."""
        return 0

    def fork_refusals(self) -> int:
        """How many forks the sandbox's pids limit has refused so far (0 when it cannot tell)."""
        return 0

    @abstractmethod
    def alive(self) -> bool:
        """Whether any process of the sandbox still runs."""

    def destroy(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def lines_of(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines from a stream of byte chunks, in time linear in its size however long a line is (a sandbox may print
    one line of hundreds of megabytes)."""
    pending = bytearray()
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending += chunk[start:end]
            yield pending.decode("utf-8", errors="replace")
            pending.clear()
            start = end + 1
        pending += chunk[start:]
    if pending:
        yield pending.decode("utf-8", errors="replace")


def script_command(script: str) -> list[str]:
    """A script as the sandbox runs it: stderr into stdout, and once it ends, whatever it left running is killed
    (so the output ends with it), its exit code kept."""
    wrapped = f"exec 2>&1\n(\n{script}\n)\ncode=$?\nkill -9 -1 2>/dev/null\nexit $code\n"
    return ["/bin/bash", "-c", wrapped]


class SandboxUnavailable(RuntimeError):
    """The backend cannot run here (missing binary, no engine)."""
