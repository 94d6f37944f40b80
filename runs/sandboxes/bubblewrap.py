"""The bubblewrap backend: Linux namespaces around the host's read-only /usr, cgroup limits, no host root.

As root, bwrap's uid mapping would still grant host-root file rights inside the sandbox, so the sandbox is started
as a dedicated unprivileged host user (``JETTY_SANDBOX_USER``, made by ``scripts/setup-sandbox-host``) through
``setpriv``. The sandbox sees /usr read-only, a synthetic /etc with only what programs need, /app (its workspace,
with /app/assets read-only), a private home and /tmp, and its own pid, ipc, uts and net namespaces (with network
on, slirp4netns gives that namespace the internet: ``network.py``).
"""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .base import GATEWAY_SOCKET, Execution, Outcome, Sandbox, SandboxSpec, SandboxUnavailable
from .cgroups import Cgroup
from .network import SandboxNetwork, waiting_for_network

ETC_FILES = (
    "alternatives",
    "ssl",
    "ca-certificates",
    "resolv.conf",
    "hosts",
    "nsswitch.conf",
    "ld.so.cache",
    "localtime",
    "mime.types",
    "protocols",
    "services",
)
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def host_user(name: str) -> tuple[int, int] | None:
    """(uid, gid) to run sandboxes as: the dedicated user when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SandboxUnavailable(
            f"bubblewrap sandboxes need the unprivileged host user {name!r}: run scripts/setup-sandbox-host"
        ) from None
    return entry.pw_uid, entry.pw_gid


class BubblewrapSandbox(Sandbox):
    backend = "bubblewrap"

    def __init__(self, spec: SandboxSpec, root: Path, user: str, *, require_cgroups: bool = False):
        if shutil.which("bwrap") is None:
            raise SandboxUnavailable("bwrap is not installed (apt-get install bubblewrap)")
        super().__init__(spec, root)
        self.ids = host_user(user)
        self.uid, self.gid = self.ids or (os.getuid(), os.getgid())
        etc = self.root / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "passwd").write_text(
            f"root:x:0:0::/root:/bin/sh\nagent:x:{self.uid}:{self.gid}::/home/agent:/bin/bash\n"
        )
        (etc / "group").write_text(f"root:x:0:\nagent:x:{self.gid}:\n")
        if self.ids:
            for path in (self.root, self.workspace, self.results, self.home):
                os.chown(path, self.uid, self.gid)
            self.root.chmod(0o700)
        self.cgroup = Cgroup(
            f"{spec.name}", memory_mb=spec.limits.memory_mb, pids=spec.limits.pids, cpus=spec.limits.cpus
        )
        if require_cgroups and not self.cgroup.enforced:
            super().destroy()
            raise SandboxUnavailable(
                f"cgroup limits could not be applied and JETTY_REQUIRE_CGROUPS is set: {self.cgroup.problem}"
            )

    def bwrap_argv(self, argv: list[str], env: dict[str, str], info_fd: int | None = None) -> list[str]:
        args = [
            "bwrap",
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            "sandbox",
            "--uid",
            str(self.uid),
            "--gid",
            str(self.gid),
        ]
        if self.in_host_network:
            args.append("--share-net")
        if info_fd is not None:
            args += ["--info-fd", str(info_fd)]  # bwrap writes its child's pid there: slirp4netns attaches to it
        args += ["--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib64", "sbin"):
            if Path(f"/{link}").is_symlink():
                args += ["--symlink", f"usr/{link}", f"/{link}"]
            elif Path(f"/{link}").is_dir():
                args += ["--ro-bind", f"/{link}", f"/{link}"]
        for name in ETC_FILES:
            if Path("/etc", name).exists():
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        if self.isolated_network:
            args += ["--ro-bind", str(self.resolv_conf), "/etc/resolv.conf"]
        args += [
            "--ro-bind",
            str(self.root / "etc/passwd"),
            "/etc/passwd",
            "--ro-bind",
            str(self.root / "etc/group"),
            "/etc/group",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--bind",
            str(self.workspace),
            "/app",
            "--ro-bind",
            str(self.assets),
            "/app/assets",
            "--bind",
            str(self.home),
            "/home/agent",
        ]
        for host, inside in self.spec.extra_binds:
            args += ["--ro-bind", host, inside]
        if self.spec.gateway_socket:
            args += ["--bind", self.spec.gateway_socket, GATEWAY_SOCKET]
        args += ["--remount-ro", "/", "--chdir", "/app", "--clearenv"]
        base = {"PATH": SANDBOX_PATH, "HOME": "/home/agent", "USER": "agent", "LANG": "C.UTF-8", "TERM": "dumb"}
        for key, value in {**base, **self.spec.env, **env}.items():
            args += ["--setenv", key, value]
        return [*args, "--", *argv]

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> Execution:
        info_r = info_w = None
        if self.isolated_network:
            info_r, info_w = os.pipe()
            argv = waiting_for_network(argv)
        command = self.bwrap_argv(argv, env or {}, info_w)
        if self.ids:
            command = [
                "setpriv",
                f"--reuid={self.uid}",
                f"--regid={self.gid}",
                "--clear-groups",
                "--no-new-privs",
                "--",
                *command,
            ]
        if self.cgroup.enforced:
            # The shell moves itself into the cgroups, then becomes the sandbox: nothing escapes the limits.
            joins = " && ".join(f"echo $$ > {d}/cgroup.procs" for d in self.cgroup.dirs)
            command = ["/bin/sh", "-c", f'{joins} && exec "$@"', "sandbox", *command]
        return BubblewrapExecution(self, command, info_r, info_w)

    def alive(self) -> bool:
        return bool(self.cgroup.pids())

    def processes(self) -> int | None:
        return self.cgroup.processes()

    def memory_kills(self) -> int:
        return self.cgroup.oom_kills()

    def fork_refusals(self) -> int:
        return self.cgroup.fork_refusals()

    def destroy(self) -> None:
        self.cgroup.remove()
        super().destroy()


class BubblewrapExecution(Execution):
    def __init__(self, sandbox: BubblewrapSandbox, command: list[str], info_r: int | None, info_w: int | None):
        super().__init__(sandbox)
        self.sandbox: BubblewrapSandbox = sandbox
        self.oom_before = sandbox.cgroup.oom_kills()
        self.stderr_path = sandbox.root / "stderr.log"
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                env={"PATH": SANDBOX_PATH},
                pass_fds=() if info_w is None else (info_w,),
            )
        if info_r is not None and info_w is not None:
            os.close(info_w)
            try:
                self.network = SandboxNetwork(self._child_pid(info_r))
            except Exception:
                self.kill()
                raise
            finally:
                os.close(info_r)
        self._begin_watch()

    def _child_pid(self, fd: int) -> int:
        """The pid bwrap reports on its info fd (its first JSON object) once the namespaces exist."""
        data = b""
        while b"}" not in data:
            readable, _, _ = select.select([fd], [], [], 10)
            chunk = os.read(fd, 4096) if readable else b""
            if not chunk:
                tail = self.stderr_path.read_text(errors="replace")[-300:]
                raise SandboxUnavailable(f"bubblewrap did not start: {tail.strip()}")
            data += chunk
        return int(json.loads(data[: data.index(b"}") + 1])["child-pid"])

    def lines(self) -> Iterator[str]:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            yield raw.decode("utf-8", errors="replace").rstrip("\n")

    def wait(self) -> Outcome:
        if self.proc.stdout is not None:
            for _ in self.lines():
                pass
        code = self.proc.wait()
        self._done.set()
        self.end_network()
        oom = self.sandbox.cgroup.oom_kills() > self.oom_before
        self.sandbox.cgroup.kill_all()  # anything the main process left behind
        tail = (
            self.stderr_path.read_bytes()[-4000:].decode("utf-8", errors="replace") if self.stderr_path.exists() else ""
        )
        return self.outcome(code, oom, tail)

    def kill(self) -> None:
        self.killed = True
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.sandbox.cgroup.kill_all()
        self.end_network()
