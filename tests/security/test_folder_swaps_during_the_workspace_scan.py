"""Finding 8 (and the scan's side of finding 1): an agent renames folders and swaps them for links to host folders
in a loop while the worker scans its workspace between tool calls.

The scan crashed the run with an internal error (a ``FileNotFoundError`` escaped it when a folder vanished under
the walk), and a folder swapped for a link between the scan and the snapshot read had the worker read a host file
as root into the run's file changes. Now the run, in both backends, ends as the agent made it end, and no byte of
the host secret reaches anything stored or served.
"""

from __future__ import annotations

from tests.security.host_secret import host_secret_fixture, places_holding  # noqa: F401 (the fixture)
from tests.test_agent_runs import assert_clean_trajectory, final_run, start_async
from tests.test_escape import runbook

STEPS = 25


def swapping(secret) -> str:
    """A runbook whose first step starts a loop that renames and swaps folders (at the top and in results) for
    links to the host secret's folder, whose middle steps write files while it runs, and whose last stops it."""
    folder = secret.folder
    loop = (
        "while true; do"
        f" mv /app/d /app/d.real; ln -s {folder} /app/d; rm -f /app/d; mv /app/d.real /app/d;"
        " echo $RANDOM > /app/d/secret.txt; echo $RANDOM > /app/d/summary.md;"
        f" mv /app/results/sub /app/results/sub.real; ln -s {folder} /app/results/sub;"
        " rm -f /app/results/sub; mv /app/results/sub.real /app/results/sub;"
        " mkdir -p /app/x/y/z; mv /app/x /app/x2; mv /app/x2 /app/x;"
        " done"
    )
    start = (
        "mkdir -p /app/d /app/results/sub /app/x/y/z;"
        " echo mine > /app/d/secret.txt; echo mine > /app/results/sub/secret.txt;"
        f" nohup bash -c '{loop}' >/dev/null 2>&1 & echo $! > /tmp/loop.pid; echo started"
    )
    writes = [
        f"echo {i} > /app/results/step{i}.txt; echo $i > /app/x/y/z/f{i}.txt; ls -R /app >/dev/null 2>&1; true"
        for i in range(STEPS)
    ]
    stop = "kill $(cat /tmp/loop.pid); sleep 0.2; rm -f /app/d /app/results/sub 2>/dev/null; echo stopped"
    return runbook(start, *writes, stop)


def test_folders_swapped_during_the_scan_neither_crash_the_run_nor_leak(
    alice, alice_client, host_secret, each_backend_worker
):
    backend = each_backend_worker.backend
    run = final_run(start_async(alice_client, runbook=swapping(host_secret), template_variables={}, task="swaps"), 180)
    assert run.status == "succeeded", (backend, run.status, run.error_kind, run.error)
    assert_clean_trajectory(run)
    outputs = [e.payload.get("output", "") for e in run.events.filter(kind="command")]
    assert any("started" in o for o in outputs) and any("stopped" in o for o in outputs), (backend, outputs)
    leaks = places_holding(host_secret, [run], alice)
    assert leaks == [], (backend, leaks)
    kept = set(run.artifacts.values_list("path", flat=True))
    assert {f"step{i}.txt" for i in range(STEPS)} <= kept, (backend, kept)
