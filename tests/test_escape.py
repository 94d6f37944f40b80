"""Escape attempts through the whole platform: an agent run whose runbook attacks its sandbox, in both backends.

Each attack runs as a real agent run (jetty-agent, the scripted model's runbook policy, a Celery worker process,
a live server). Reads and writes outside the sandbox find nothing and change nothing; exhausting a limit ends the
run as a user error that names the limit; and afterwards the platform is unharmed: it answers, runs the next run,
and left no sandbox behind.
"""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

from django.conf import settings

from tests.test_agent_runs import assert_clean_trajectory, final_run, start_async
from trajectories.models import Run

ROOT = Path(__file__).resolve().parents[1]
MARKER = "jetty-escape-marker"  # no write attempt may leave it anywhere on the host


def runbook(*blocks: str) -> str:
    steps = "\n".join(f"## Step {i}\n```bash\n{block}\n```\n" for i, block in enumerate(blocks, 1))
    return f"---\nversion: 1.0.0\nevaluation: programmatic\n---\n# Objective\nTry to escape.\n\n{steps}"


PROBE = """python3 - <<'EOF' > /app/results/{name}.txt
import socket
for host, port in [{targets}]:
    try:
        socket.create_connection((host, port), 2); print("OPEN", host, port)
    except OSError:
        print("closed", host, port)
EOF
cat /app/results/{name}.txt"""
HOST_SERVICES = "('127.0.0.1', 5432), ('127.0.0.1', 6379), ('10.0.2.2', 5432), ('169.254.169.254', 80)"

ATTACKS = {
    # name: (runbook, jetty options, expected status, what the error must say)
    "read-host-secrets": (
        runbook(
            "(env; cat /proc/1/environ; cat /etc/shadow; ls -la /root /work /var/lib/postgresql;"
            f" cat {ROOT}/var/secret_key; ls /proc | head -50) > /app/results/loot.txt 2>&1; echo looked"
        ),
        {},
        "succeeded",
        None,
    ),
    "write-outside-mounts": (
        runbook(
            f"for p in /usr/{MARKER} /etc/{MARKER} /{MARKER} /home/{MARKER} {ROOT}/{MARKER} /tmp/../{MARKER}"
            f" /app/assets/{MARKER} /proc/sys/kernel/{MARKER}; do (echo x > $p) 2>/dev/null && echo WROTE $p; done;"
            " echo tried > /app/results/tried.txt"
        ),
        {},
        "succeeded",
        None,
    ),
    "network-off-host-services": (
        runbook(PROBE.format(name="off", targets=HOST_SERVICES + ", ('1.1.1.1', 80)")),
        {"network": "off"},
        "succeeded",
        None,
    ),
    "network-on-host-services": (
        runbook(PROBE.format(name="on", targets=HOST_SERVICES)),
        {"network": "on"},
        "succeeded",
        None,
    ),
    "exhaust-memory": (
        runbook("python3 -c 'blocks = [bytearray(16 << 20) for _ in range(64)]; print(len(blocks))'; sleep 30"),
        {"limits": {"memory_mb": 128}},
        "failed",
        "memory limit exceeded: the sandbox used all of its 128 MB",
    ),
    "exhaust-pids": (
        runbook("b() { b | b & }; b; sleep 60"),
        {"limits": {"pids": 64}},
        "failed",
        "process limit exceeded: the sandbox held all of its 64 processes",
    ),
    "exhaust-disk": (
        runbook("dd if=/dev/zero of=/app/fill bs=1M count=200 status=none; sleep 30"),
        {"limits": {"disk_mb": 32}},
        "failed",
        "disk limit exceeded: the files under /app grew past 32 MB",
    ),
    "exhaust-time": (
        runbook("sleep 120"),
        {"timeout_s": 4},
        "timed_out",
        "wall time limit of 4 s exceeded",
    ),
}


def artifact(run: Run, path: str) -> str:
    return run.artifacts.get(path=path).file.read().decode()


def test_every_escape_attempt_is_contained_and_the_platform_unharmed(alice, alice_client, jetty, each_backend_worker):
    backend = each_backend_worker.backend
    started = {
        name: start_async(alice_client, runbook=text, template_variables={}, task=f"escape-{name}", **options)
        for name, (text, options, _, _) in ATTACKS.items()
    }
    runs = {name: final_run(run_id, 120) for name, run_id in started.items()}
    for name, run in runs.items():
        _, _, status, error = ATTACKS[name]
        assert run.status == status, (backend, name, run.status, run.error)
        if error is None:
            assert run.error == "", (name, run.error)
        else:
            assert run.error_kind == "user" and run.error.startswith(error), (backend, name, run.error)
        assert_clean_trajectory(run)

    loot = artifact(runs["read-host-secrets"], "loot.txt")
    secrets = [v for k, v in os.environ.items() if k in ("DATABASE_URL", "SECRET_KEY", "REDIS_URL") and v]
    secrets += [alice.token, "sk-upstream-secret", "postgresql://", settings.SECRET_KEY]
    outputs = [e.payload.get("output", "") for e in runs["read-host-secrets"].events.filter(kind="command")]
    assert any("looked" in output for output in outputs)  # the attempt did run
    assert [s[:8] for s in secrets if s in loot] == []
    assert "root:" not in loot.split("/etc/shadow", 1)[-1][:200]  # no password hashes

    commands = runs["write-outside-mounts"].events.filter(kind="command")
    assert not [e.payload["output"] for e in commands if "WROTE" in e.payload.get("output", "")]
    assert artifact(runs["write-outside-mounts"], "tried.txt") == "tried\n"
    for place in (Path("/usr"), Path("/etc"), Path("/"), ROOT, Path(settings.JETTY_SANDBOX_ROOT).parent):
        assert not (place / MARKER).exists(), place

    for name in ("off", "on"):
        lines = artifact(runs[f"network-{name}-host-services"], f"{name}.txt").splitlines()
        assert lines and all(line.startswith("closed") for line in lines), (backend, name, lines)

    # The platform is unharmed: it answers, runs the next run, and left no sandbox behind.
    with urllib.request.urlopen(f"{jetty.url}/healthz", timeout=10) as response:
        assert response.status == 200
    after = final_run(
        start_async(alice_client, runbook=runbook("echo fine > /app/results/ok.txt"), template_variables={}), 60
    )
    assert after.status == "succeeded" and artifact(after, "ok.txt") == "fine\n"
    sandboxes = ROOT / "var" / f"test-sandboxes-{jetty.url.rsplit(':', 1)[1]}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(sandboxes.glob("run_*")):
        time.sleep(0.2)
    assert not list(sandboxes.glob("run_*"))
