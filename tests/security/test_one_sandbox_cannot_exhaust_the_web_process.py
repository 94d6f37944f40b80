"""Found by the outside attack pass: one sandbox took the whole web process offline.

Every sandbox was given daphne's own gateway socket, and daphne serves the whole platform. A runbook that opened
connections to it until its file limit (20,000 in a Docker sandbox) held daphne at its own limit: `/healthz`, the
UI, the API and every org's model calls failed for as long as the run lasted. Each sandbox now reaches the
gateway through a door of its own that holds at most JETTY_SANDBOX_GATEWAY_CONNECTIONS connections at once; the
rest wait in its backlog and cost daphne nothing.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request

from tests.test_agent_runs import final_run, start_async
from tests.test_escape import runbook

OPENED = 600
FLOOD = runbook(
    f"""python3 - <<'EOF'
import socket, time
held, refused, deadline = [], 0, time.monotonic() + 10
while len(held) < {OPENED} and time.monotonic() < deadline:
    s = socket.socket(socket.AF_UNIX)
    s.setblocking(False)
    if s.connect_ex("/run/jetty/gateway.sock") == 0:
        held.append(s)
    else:  # the backlog is full: wait for the other side to accept, as a patient attacker would
        refused += 1
        s.close()
        time.sleep(0.005)
print("held", len(held), "refused", refused, flush=True)
time.sleep(8)
EOF
echo flooded"""
)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_sandbox_holding_gateway_connections_does_not_take_the_web_process(
    alice, alice_client, jetty, jetty_server, each_backend_worker
):
    daphne = jetty_server.proc.pid
    before = open_fds(daphne)
    peak, answers = [before], []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak.append(open_fds(daphne))
            try:
                with urllib.request.urlopen(f"{jetty.url}/healthz", timeout=5) as response:
                    answers.append(response.status)
            except OSError:
                answers.append(0)
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run = final_run(start_async(alice_client, runbook=FLOOD, template_variables={}, task="fd-flood"), 120)
    finally:
        done.set()
        watcher.join()
    backend = each_backend_worker.backend
    commands = " ".join(e.payload.get("output", "") for e in run.events.filter(kind="command"))
    assert "held" in commands and "flooded" in commands, (backend, commands[:500])  # the flood did run
    assert run.status == "succeeded", (backend, run.status, run.error)
    assert max(peak) - before < 64 + 40, (backend, before, max(peak))
    assert answers and all(status == 200 for status in answers), (backend, answers)
