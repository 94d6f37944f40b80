"""Containment of the sandbox backends: what an agent inside can and cannot do to the host."""

from __future__ import annotations

import ipaddress
import shlex
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from runs.sandboxes import Limits, SandboxSpec, SandboxUnavailable, create_sandbox, network
from runs.sandboxes.network import host_networks

BACKENDS = ["bubblewrap", "docker"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=BACKENDS)
def make(request, settings):
    # Not under pytest's tmp_path: the sandbox user must be able to traverse every folder above its own.
    settings.JETTY_SANDBOX_ROOT = settings.VAR_DIR / "test-sandboxes" / uuid.uuid4().hex[:8]
    made = []

    def factory(**spec):
        limits = Limits(**{"memory_mb": 256, "pids": 64, "wall_s": 20, "disk_mb": 64, **spec.pop("limits", {})})
        sandbox = create_sandbox(SandboxSpec(name=f"t{len(made)}", limits=limits, **spec), backend=request.param)
        made.append(sandbox)
        return sandbox

    yield factory
    for sandbox in made:
        sandbox.destroy()
    settings.JETTY_SANDBOX_ROOT.rmdir()


def sh(sandbox, script: str, **env):
    execution = sandbox.start(["/bin/bash", "-c", script], env=env)
    lines = list(execution.lines())
    return lines, execution.wait()


def test_the_agent_works_in_app_with_read_only_assets_and_collected_results(make):
    sandbox = make()
    (sandbox.assets / "input.csv").write_text("a,b\n1,2\n")
    lines, outcome = sh(
        sandbox,
        "pwd; cat assets/input.csv | wc -l; echo done > results/out.txt; "
        "echo x > assets/input.csv || echo assets-read-only",
    )
    assert outcome.exit_code == 0
    assert lines == ["/app", "2", "assets-read-only"]
    assert (sandbox.results / "out.txt").read_text() == "done\n"
    assert (sandbox.assets / "input.csv").read_text() == "a,b\n1,2\n"


def test_host_files_outside_the_mounts_are_invisible(make):
    sandbox = make()
    lines, _ = sh(
        sandbox,
        f"for p in /root /work {ROOT} /var/lib/postgresql /etc/shadow; do "
        "if [ -d $p ]; then ls $p >/dev/null 2>&1 && echo READ $p; else cat $p >/dev/null 2>&1 && echo READ $p; fi; "
        "done; id -u; "
        "ls /proc | grep -c '^[0-9]'",
    )
    assert not [line for line in lines if line.startswith("READ")], lines
    assert lines[-2] != "0"
    assert int(lines[-1]) < 10  # its own pid namespace: no host process is visible


def test_nothing_outside_the_workspace_is_writable(make):
    sandbox = make()
    lines, _ = sh(
        sandbox,
        "for p in /usr/x /etc/x /x /proc/sys/vm/drop_caches; do "
        "(echo 1 > $p) 2>/dev/null && echo WROTE $p; done; echo ok > /tmp/t && echo tmp-ok",
    )
    assert lines == ["tmp-ok"]


def test_network_off_means_no_egress_and_no_host_services(make):
    sandbox = make(network=False)
    probe = (
        "import socket\n"
        "for host, port in [('1.1.1.1', 80), ('127.0.0.1', 5432), ('127.0.0.1', 6379), ('169.254.169.254', 80)]:\n"
        "    try:\n"
        "        socket.create_connection((host, port), 1); print('OPEN', host, port)\n"
        "    except OSError as exc: print('closed', host, port)\n"
    )
    execution = sandbox.start(["python3", "-c", probe])
    lines = list(execution.lines())
    execution.wait()
    assert len(lines) == 4 and all(line.startswith("closed") for line in lines), lines


def test_network_on_means_the_internet_but_nothing_of_the_host(make):
    # A service on every host address, as a careless deployment might run one: the sandbox must not reach it.
    listener = socket.create_server(("0.0.0.0", 0))
    port = listener.getsockname()[1]
    targets = [("127.0.0.1", 5432), ("127.0.0.1", 6379), ("10.0.2.2", 5432), ("10.0.2.2", port)]
    targets += [(str(ipaddress.ip_interface(net).ip), port) for net in host_networks() if net.endswith("/32")]
    targets += [("169.254.169.254", 80), ("192.168.1.1", 80), ("172.17.0.1", 80)]
    probe = (
        "import socket, sys\n"
        f"for host, port in {targets!r}:\n"
        "    try:\n"
        "        socket.create_connection((host, port), 2); print('OPEN', host, port)\n"
        "    except OSError as exc: print('closed', host, port)\n"
        "try:\n"
        "    socket.create_connection((socket.gethostbyname('pypi.org'), 443), 10); print('internet')\n"
        "except OSError as exc: print('no internet', exc)\n"
    )
    try:
        lines, outcome = sh(make(network=True), f"python3 -c {shlex.quote(probe)}")
    finally:
        listener.close()
    assert outcome.exit_code == 0, outcome.stderr_tail
    assert [line for line in lines if line.startswith("OPEN")] == [], lines
    assert len([line for line in lines if line.startswith("closed")]) == len(targets)
    try:
        socket.create_connection(("pypi.org", 443), 10).close()
    except OSError:
        return  # this host has no way out either: nothing more to compare
    assert lines[-1] == "internet"


def test_a_network_that_cannot_be_attached_stops_the_sandbox_before_the_agent_runs(make, monkeypatch):
    monkeypatch.setattr(network, "BLOCKED", (*network.BLOCKED, "not-a-network"))
    sandbox = make(network=True)
    with pytest.raises(SandboxUnavailable, match="could not set the sandbox's routes"):
        sandbox.start(["/bin/bash", "-c", "echo ran > /app/results/ran.txt"])
    time.sleep(0.5)
    assert not sandbox.alive() and not (sandbox.results / "ran.txt").exists()


def test_memory_over_the_limit_ends_as_a_user_error(make):
    sandbox = make(limits={"memory_mb": 64})
    execution = sandbox.start(["python3", "-c", "b = bytearray(300 * 1024 * 1024); print('survived')"])
    assert "survived" not in list(execution.lines())
    outcome = execution.wait()
    assert outcome.oom_killed and outcome.user_error == "memory limit exceeded"


def test_wall_time_over_the_limit_ends_the_run(make):
    sandbox = make(limits={"wall_s": 2})
    outcome = sandbox.start(["sleep", "60"]).wait()
    assert outcome.timed_out and outcome.user_error == "wall time limit exceeded"


def test_a_fork_bomb_is_contained_and_ended_at_the_process_limit(make):
    sandbox = make(limits={"pids": 32, "wall_s": 30})
    started = time.monotonic()
    outcome = sandbox.start(["/bin/bash", "-c", "b() { b | b & }; b; sleep 60"]).wait()
    assert outcome.pids_exceeded and outcome.user_error == "process limit exceeded", outcome
    assert time.monotonic() - started < 15  # ended by the process limit, not the wall time
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork
    assert not sandbox.alive()


def test_disk_over_the_limit_ends_as_a_user_error(make):
    sandbox = make(limits={"disk_mb": 8, "wall_s": 20})
    outcome = sandbox.start(["/bin/bash", "-c", "dd if=/dev/zero of=/app/big bs=1M count=40; sleep 10"]).wait()
    assert outcome.disk_exceeded and outcome.user_error == "disk limit exceeded"


def test_only_declared_secrets_reach_the_sandbox(make, monkeypatch):
    monkeypatch.setenv("UNDECLARED_SECRET", "s3cr3t-host-value")
    sandbox = make(env={"DECLARED_TOKEN": "visible"})
    lines, _ = sh(sandbox, "env")
    assert "DECLARED_TOKEN=visible" in lines
    assert not [line for line in lines if "s3cr3t-host-value" in line or "DATABASE_URL" in line]


def test_destroy_leaves_nothing_behind(make):
    sandbox = make()
    # Durations no other process on the machine would use: the check below looks for them in every process.
    execution = sandbox.start(["/bin/bash", "-c", "sleep 3011.5 & sleep 3012.5 & echo started; wait"])
    assert next(iter(execution.lines())) == "started"
    execution.kill()
    execution.wait()
    sandbox.destroy()
    assert not sandbox.root.exists()
    assert not sandbox.alive()
    if sandbox.backend == "bubblewrap":
        assert all(not d.exists() for d in sandbox.cgroup.dirs)
    else:
        assert not sandbox.docker.containers.list(all=True, filters={"name": f"jetty-{sandbox.spec.name}"})
    ours = ("sleep 3011.5", "sleep 3012.5")
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if _cmdline(p).startswith(ours)]


def _cmdline(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
