"""Per-sandbox cgroups for memory, pids and CPU, on cgroup v1 (this machine) or v2.

If neither hierarchy is writable the sandbox still runs, without kernel-enforced limits; ``Cgroup.enforced``
says which it got and ``Cgroup.problem`` why not. With ``JETTY_REQUIRE_CGROUPS`` the sandbox refuses to start instead.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
PARENT = "jetty"


def version() -> int | None:
    """2 for a unified hierarchy with the controllers we need, 1 for v1 controllers, None if unusable."""
    unified = ROOT / "cgroup.controllers"
    if unified.exists():
        controllers = unified.read_text().split()
        return 2 if {"memory", "pids"} <= set(controllers) else None
    if (ROOT / "memory").is_dir() and (ROOT / "pids").is_dir():
        return 1
    return None


def _own_v1_path(controller: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path.lstrip("/")
    return ""


def read_count(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def event_count(path: Path, name: str) -> int:
    """One counter of a flat-keyed cgroup file (``memory.oom_control``/``memory.events``: ``oom_kill``;
    ``pids.events``: ``max``), 0 when it is not there."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


class Cgroup:
    def __init__(self, name: str, *, memory_mb: int, pids: int, cpus: float):
        self.name = name
        self.version = version()
        self.dirs: list[Path] = []
        self.enforced = False
        self.problem = ""
        try:
            if self.version == 1:
                self._make_v1(memory_mb, pids, cpus)
            elif self.version == 2:
                self._make_v2(memory_mb, pids, cpus)
            else:
                self.problem = f"no cgroup v1 or v2 hierarchy with the memory and pids controllers under {ROOT}"
            self.enforced = bool(self.dirs)
        except OSError as exc:
            self.problem = str(exc)
            self.remove()
            self.dirs = []
        if self.problem:
            logger.warning("cgroup limits unavailable for %s: %s", name, self.problem)

    def _make_v1(self, memory_mb: int, pids: int, cpus: float) -> None:
        memory = ROOT / "memory" / _own_v1_path("memory") / PARENT / self.name
        memory.mkdir(parents=True, exist_ok=True)
        self.dirs.append(memory)
        (memory / "memory.limit_in_bytes").write_text(str(memory_mb * 1024 * 1024))
        swap = memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(memory_mb * 1024 * 1024))
        pid_dir = ROOT / "pids" / PARENT / self.name
        pid_dir.mkdir(parents=True, exist_ok=True)
        self.dirs.append(pid_dir)
        (pid_dir / "pids.max").write_text(str(pids))
        cpu = ROOT / "cpu" / PARENT / self.name
        if (ROOT / "cpu").is_dir():
            cpu.mkdir(parents=True, exist_ok=True)
            self.dirs.append(cpu)
            (cpu / "cpu.cfs_period_us").write_text("100000")
            (cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * 100000)))

    def _make_v2(self, memory_mb: int, pids: int, cpus: float) -> None:
        parent = ROOT / PARENT
        parent.mkdir(exist_ok=True)
        (ROOT / "cgroup.subtree_control").write_text("+memory +pids +cpu")
        (parent / "cgroup.subtree_control").write_text("+memory +pids +cpu")
        group = parent / self.name
        group.mkdir(exist_ok=True)
        self.dirs.append(group)
        (group / "memory.max").write_text(str(memory_mb * 1024 * 1024))
        (group / "memory.swap.max").write_text("0")
        (group / "pids.max").write_text(str(pids))
        (group / "cpu.max").write_text(f"{int(cpus * 100000)} 100000")

    @classmethod
    def existing(cls, name: str) -> Cgroup:
        """The groups a sandbox of this name made, to clean up after a crash."""
        group = cls.__new__(cls)
        group.name, group.version, group.enforced = name, version(), True
        if group.version == 1:
            candidates = [
                ROOT / "memory" / _own_v1_path("memory") / PARENT / name,
                ROOT / "pids" / PARENT / name,
                ROOT / "cpu" / PARENT / name,
            ]
        else:
            candidates = [ROOT / PARENT / name]
        group.dirs = [d for d in candidates if d.is_dir()]
        return group

    def join(self, pid: int | None = None) -> None:
        """Move a process (the caller, by default: use it between fork and exec) into every group."""
        for directory in self.dirs:
            (directory / "cgroup.procs").write_text(str(pid or os.getpid()))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in self.dirs:
            try:
                found |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return found

    def oom_kills(self) -> int:
        """How many processes the memory limit has killed so far."""
        return sum(
            event_count(directory / name, "oom_kill")
            for directory in self.dirs
            for name in ("memory.oom_control", "memory.events")
            if (directory / name).exists()
        )

    def processes(self) -> int | None:
        """How many processes (tasks) the pids limit counts now, or None without a pids group."""
        for directory in self.dirs:
            current = directory / "pids.current"
            if current.exists():
                return read_count(current)
        return None

    def fork_refusals(self) -> int:
        """How many forks the pids limit has refused so far (``max`` in ``pids.events``)."""
        for directory in self.dirs:
            if (directory / "pids.events").exists():
                return event_count(directory / "pids.events", "max")
        return 0

    def kill_all(self) -> None:
        for directory in self.dirs:
            if (directory / "cgroup.kill").exists():
                (directory / "cgroup.kill").write_text("1")
        # Without cgroup.kill (cgroups v1) a fork bomb can fork between our reads, and killed processes stay listed
        # until they are reaped: kill what is there, give the kernel a moment, and look again, for up to 5 s.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            remaining = self.pids()
            if not remaining:
                return
            for pid in remaining:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)
        logger.warning("processes still in the sandbox's cgroup after 5 s of killing: %s", sorted(self.pids())[:10])

    def remove(self) -> None:
        self.kill_all()
        for directory in self.dirs:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("could not remove cgroup %s: %s", directory, exc)
